"""vault access control: SECURITY DEFINER functions, hash-chained append-only audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every function that touches the vault runs as its owner with a fixed search_path, so the
# ingest and reidentifier roles need no privilege on any vault table.
DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
CHAIN_LOCK = 0x41554454  # "AUDT": one audit insert at a time, so ids follow the chain

FUNCTIONS = [
    # --- canonical text of an audit row, hashed into the chain (mirrored in store/audit.py)
    """
CREATE FUNCTION vault.audit_canonical(p_id bigint, p_at timestamptz, p_role text,
    p_actor text, p_purpose text, p_target text, p_result text, p_rows integer)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT string_agg(char_length(v) || ':' || v, ';' ORDER BY n)
    FROM unnest(ARRAY[p_id::text,
                      to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                      coalesce(p_role, ''), coalesce(p_actor, ''), coalesce(p_purpose, ''),
                      coalesce(p_target, ''), coalesce(p_result, ''), p_rows::text])
         WITH ORDINALITY AS t(v, n)
$fn$""",
    f"""
CREATE FUNCTION vault.audit_chain() RETURNS trigger LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    prev bytea;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    NEW.id := nextval('vault.audit_log_id_seq'::regclass);
    NEW.at := clock_timestamp();
    SELECT a.row_hash INTO prev FROM vault.audit_log a ORDER BY a.id DESC LIMIT 1;
    NEW.prev_hash := coalesce(prev, decode(repeat('00', 32), 'hex'));
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(vault.audit_canonical(
        NEW.id, NEW.at, NEW.db_role, NEW.actor, NEW.purpose, NEW.target, NEW.result,
        NEW.rows_released), 'UTF8'));
    RETURN NEW;
END
$fn$""",
    # --- append-only: UPDATE and DELETE only as a logged break-glass owner operation
    f"""
CREATE FUNCTION vault.audit_append_only() RETURNS trigger LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    vault_owner oid := (SELECT nspowner FROM pg_namespace WHERE nspname = 'vault');
BEGIN
    IF TG_OP <> 'TRUNCATE' AND current_setting('vault.break_glass', true) = 'on'
       AND pg_has_role(session_user, vault_owner, 'MEMBER') THEN
        INSERT INTO vault.audit_log(actor, purpose, target, result, rows_released)
        VALUES (session_user, 'break-glass ' || TG_OP, 'vault.audit_log row ' || OLD.id,
                'break_glass', 0);
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'vault.audit_log is append-only: % refused', TG_OP
        USING ERRCODE = '42501';
END
$fn$""",
    # --- ingest writes the vault only through these
    f"""
CREATE FUNCTION vault.put_identities(p_kind text[], p_pseudonym text[], p_blind bytea[],
    p_key text[], p_ct bytea[]) RETURNS integer LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    n integer;
BEGIN
    INSERT INTO vault.identity(kind, pseudonym, blind_index, key_id, ciphertext)
    SELECT * FROM unnest(p_kind, p_pseudonym, p_blind, p_key, p_ct)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$""",
    f"""
CREATE FUNCTION vault.put_sources(p_id text[], p_key text[], p_ct bytea[])
RETURNS integer LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    n integer;
BEGIN
    INSERT INTO vault.source(source_id, key_id, ciphertext)
    SELECT * FROM unnest(p_id, p_key, p_ct)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$""",
    # --- release of originals: the audit row is written in the same transaction
    f"""
CREATE FUNCTION vault.reidentify(p_target text, p_reason text, p_actor text)
RETURNS TABLE(kind text, pseudonym text, key_id text, ciphertext bytea)
LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    targets text[] := ARRAY[p_target];
    n integer;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to re-identify' USING ERRCODE = '22023';
    END IF;
    targets := targets || ARRAY(
        SELECT unnest(ARRAY[i.series_uid, i.study_uid, i.patient_id, i.source_id])
        FROM dicom_index.instance i WHERE i.sop_uid = p_target);
    targets := targets || ARRAY(
        SELECT se.study_uid FROM dicom_index.series se WHERE se.series_uid = p_target);
    targets := targets || ARRAY(
        SELECT unnest(ARRAY[st.patient_id, st.accession_number, st.study_id])
        FROM dicom_index.study st WHERE st.study_uid = ANY(targets));
    RETURN QUERY
        SELECT v.kind, v.pseudonym, v.key_id, v.ciphertext
        FROM vault.identity v WHERE v.pseudonym = ANY(targets)
        UNION ALL
        SELECT 'source_path'::text, s.source_id, s.key_id, s.ciphertext
        FROM vault.source s WHERE s.source_id = ANY(targets);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vault.audit_log(actor, purpose, target, result, rows_released)
    VALUES (coalesce(nullif(btrim(p_actor), ''), session_user), p_reason, p_target,
            CASE WHEN n > 0 THEN 'released' ELSE 'not_found' END, n);
END
$fn$""",
    # --- every study of one ingest run (teleradiology mapping), one audit row
    f"""
CREATE FUNCTION vault.reidentify_run(p_run bigint, p_reason text, p_actor text)
RETURNS TABLE(study_uid text, kind text, pseudonym text, key_id text, ciphertext bytea)
LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    n integer;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to re-identify' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        WITH studies AS (
            SELECT DISTINCT st.study_uid, st.patient_id, st.accession_number, st.study_id
            FROM dicom_index.instance i JOIN dicom_index.study st USING (study_uid)
            WHERE i.run_id = p_run),
        wanted AS (
            SELECT s.study_uid, t.p FROM studies s,
                LATERAL unnest(ARRAY[s.study_uid, s.patient_id, s.accession_number,
                                     s.study_id]) AS t(p) WHERE t.p IS NOT NULL)
        SELECT w.study_uid, v.kind, v.pseudonym, v.key_id, v.ciphertext
        FROM wanted w JOIN vault.identity v ON v.pseudonym = w.p;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vault.audit_log(actor, purpose, target, result, rows_released)
    VALUES (coalesce(nullif(btrim(p_actor), ''), session_user), p_reason, 'run ' || p_run,
            CASE WHEN n > 0 THEN 'released' ELSE 'not_found' END, n);
END
$fn$""",
    # --- forward look-up by the blind index of an original value
    f"""
CREATE FUNCTION vault.lookup(p_kind text, p_blind bytea, p_reason text, p_actor text)
RETURNS SETOF text LANGUAGE plpgsql {DEFINER} AS $fn$
DECLARE
    n integer;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for a look-up' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY SELECT DISTINCT v.pseudonym FROM vault.identity v
        WHERE v.kind = p_kind AND v.blind_index = p_blind;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vault.audit_log(actor, purpose, target, result, rows_released)
    VALUES (coalesce(nullif(btrim(p_actor), ''), session_user), p_reason,
            'lookup ' || p_kind || ' blind:' || left(encode(p_blind, 'hex'), 16),
            CASE WHEN n > 0 THEN 'found' ELSE 'not_found' END, n);
END
$fn$""",
]

BACKFILL = """
DO $$
DECLARE
    r record;
    prev bytea := decode(repeat('00', 32), 'hex');
BEGIN
    FOR r IN SELECT id FROM vault.audit_log ORDER BY id LOOP
        UPDATE vault.audit_log a SET prev_hash = prev,
            row_hash = sha256(prev || convert_to(vault.audit_canonical(a.id, a.at, a.db_role,
                a.actor, a.purpose, a.target, a.result, a.rows_released), 'UTF8'))
        WHERE a.id = r.id RETURNING a.row_hash INTO prev;
    END LOOP;
END
$$
"""

SIGNATURES = [
    "vault.audit_canonical(bigint, timestamptz, text, text, text, text, text, integer)",
    "vault.audit_chain()",
    "vault.audit_append_only()",
    "vault.put_identities(text[], text[], bytea[], text[], bytea[])",
    "vault.put_sources(text[], text[], bytea[])",
    "vault.reidentify(text, text, text)",
    "vault.reidentify_run(bigint, text, text)",
    "vault.lookup(text, bytea, text, text)",
]


def upgrade() -> None:
    op.execute("DROP FUNCTION vault.reidentify(text, text, text)")
    op.add_column("audit_log", sa.Column("prev_hash", sa.LargeBinary()), schema="vault")
    op.add_column("audit_log", sa.Column("row_hash", sa.LargeBinary()), schema="vault")
    op.alter_column("audit_log", "db_role", server_default=sa.text("SESSION_USER"), schema="vault")
    # ids come from the chain trigger alone, so they are contiguous and a gap means a lost row
    op.execute("ALTER TABLE vault.audit_log ALTER COLUMN id DROP DEFAULT")
    for fn in FUNCTIONS:
        op.execute(fn)
    op.execute(BACKFILL)  # rows written before this revision join the chain in id order
    op.alter_column("audit_log", "prev_hash", nullable=False, schema="vault")
    op.alter_column("audit_log", "row_hash", nullable=False, schema="vault")
    for sig in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {sig} FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER audit_chain BEFORE INSERT ON vault.audit_log "
        "FOR EACH ROW EXECUTE FUNCTION vault.audit_chain()"
    )
    op.execute(
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON vault.audit_log "
        "FOR EACH ROW EXECUTE FUNCTION vault.audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON vault.audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION vault.audit_append_only()"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE vault.audit_log ALTER COLUMN id "
        "SET DEFAULT nextval('vault.audit_log_id_seq'::regclass)"
    )
    for trigger in ("audit_no_truncate", "audit_append_only", "audit_chain"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON vault.audit_log")
    for sig in reversed(SIGNATURES):
        op.execute(f"DROP FUNCTION IF EXISTS {sig}")
    op.alter_column("audit_log", "db_role", server_default=sa.text("CURRENT_USER"), schema="vault")
    op.drop_column("audit_log", "row_hash", schema="vault")
    op.drop_column("audit_log", "prev_hash", schema="vault")
