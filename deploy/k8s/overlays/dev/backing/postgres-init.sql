-- Dev overlay only: one database and one login role per service, run by the postgres image on
-- its first start. EXAMPLE PASSWORDS FOR A DEV CLUSTER ONLY; they match the ordermesh-database
-- secret in ../kustomization.yaml.
CREATE ROLE ordermesh_users LOGIN PASSWORD 'example-only-users-db-password';
CREATE ROLE ordermesh_catalog LOGIN PASSWORD 'example-only-catalog-db-password';
CREATE ROLE ordermesh_orders LOGIN PASSWORD 'example-only-orders-db-password';

CREATE DATABASE users OWNER ordermesh_users;
CREATE DATABASE catalog OWNER ordermesh_catalog;
CREATE DATABASE orders OWNER ordermesh_orders;

REVOKE ALL ON DATABASE users FROM PUBLIC;
REVOKE ALL ON DATABASE catalog FROM PUBLIC;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
