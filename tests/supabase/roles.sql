-- The roles of a hosted Supabase project, for the Supabase role mode (bin/stack --supabase).
--
-- Run once per cluster by its bootstrap superuser (supabase_admin, as on Supabase), which owns
-- nothing of the app's. The control plane connects as `postgres`, which on Supabase is NOT a
-- superuser: it may create roles and databases, replicate and bypass RLS, read every table and
-- every session (pg_read_all_data, pg_monitor), end other sessions (pg_signal_backend), act as the
-- API roles and as GoTrue's role, and set session_replication_role (granted on the parameter).
-- Written from Supabase's documented role model; see docs/supabase-mode.md.
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE;

CREATE ROLE postgres LOGIN NOSUPERUSER INHERIT CREATEROLE CREATEDB REPLICATION BYPASSRLS;
GRANT pg_monitor, pg_read_all_data, pg_signal_backend TO postgres;
GRANT anon, authenticated, service_role TO postgres WITH ADMIN OPTION;
GRANT supabase_auth_admin TO postgres;
GRANT SET ON PARAMETER session_replication_role TO postgres;
