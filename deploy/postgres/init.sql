-- One database and one login role per service, created on the PostgreSQL container's first
-- start (docker-entrypoint-initdb.d). Each service keeps its tables in its own schema inside
-- its database (DATABASE_SCHEMA, default the service name), which it creates at migration.
--
-- EXAMPLE PASSWORDS FOR LOCAL USE ONLY. They match the *_DATABASE_URL values in example.env;
-- change both together, and never reuse them anywhere reachable by others.

CREATE ROLE ordermesh_users LOGIN PASSWORD 'example-only-users-db-password';
CREATE ROLE ordermesh_catalog LOGIN PASSWORD 'example-only-catalog-db-password';
CREATE ROLE ordermesh_orders LOGIN PASSWORD 'example-only-orders-db-password';

CREATE DATABASE users OWNER ordermesh_users;
CREATE DATABASE catalog OWNER ordermesh_catalog;
CREATE DATABASE orders OWNER ordermesh_orders;

-- Nobody else connects to a service's database.
REVOKE ALL ON DATABASE users FROM PUBLIC;
REVOKE ALL ON DATABASE catalog FROM PUBLIC;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
