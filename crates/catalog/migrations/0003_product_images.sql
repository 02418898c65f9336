-- Product pictures. Only the re-encoded renditions are kept, never the uploaded file, so
-- nothing a camera wrote beside the pixels (EXIF, GPS) is stored. `id` is derived from the
-- uploaded bytes: what an id names never changes, so its URLs can be cached for a year.
-- BYTEA is PostgreSQL's binary type; SQLite stores the same values as BLOBs.
CREATE TABLE product_images (
    product_id    BIGINT NOT NULL REFERENCES products(id),
    id            TEXT NOT NULL,
    position      BIGINT NOT NULL,
    alt           TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    thumb_width   BIGINT NOT NULL,
    thumb_height  BIGINT NOT NULL,
    display_jpeg  BYTEA NOT NULL,
    thumb_jpeg    BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (product_id, id)
);
