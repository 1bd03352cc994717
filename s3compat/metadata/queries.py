"""Every SQL statement the gateway runs, by name. No SQL lives anywhere else.

Parameters are positional ($1 …) as asyncpg wants; each query's docstring-style comment
says what the parameters are.
"""

from __future__ import annotations

# --- schema ---------------------------------------------------------------------------

MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7306822133001)"
SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
CURRENT_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_version"
RECORD_SCHEMA_VERSION = "INSERT INTO schema_version (version) VALUES ($1)"

PING = "SELECT 1"

# --- nodes ----------------------------------------------------------------------------

# $1 node_id, $2 address
UPSERT_NODE = """
INSERT INTO nodes (node_id, address) VALUES ($1, $2)
ON CONFLICT (node_id) DO UPDATE SET address = excluded.address, updated_at = now()
"""
LIST_NODES = "SELECT node_id, address, state FROM nodes ORDER BY node_id"
# `s3compat admin node add`. $1 node_id, $2 address -> row if added
INSERT_NODE = """
INSERT INTO nodes (node_id, address) VALUES ($1, $2) ON CONFLICT (node_id) DO NOTHING
RETURNING node_id
"""
# $1 node_id, $2 state -> row if the node exists
SET_NODE_STATE = """
UPDATE nodes SET state = $2, updated_at = now() WHERE node_id = $1 RETURNING node_id
"""
# A node is removed only once no chunk row names it. $1 node_id -> row if removed
DELETE_EMPTY_NODE = """
DELETE FROM nodes WHERE node_id = $1
  AND NOT EXISTS (SELECT 1 FROM chunks WHERE node_id = $1)
RETURNING node_id
"""
# -> (node_id, chunks) for every node that holds chunk rows
CHUNKS_PER_NODE = "SELECT node_id, count(*) AS chunks FROM chunks GROUP BY node_id"

# --- rebalance ------------------------------------------------------------------------

# The chunks of committed blobs, a page of blobs at a time. $1 after blob_id, $2 limit
BLOB_PLACEMENTS = """
SELECT c.blob_id,
       array_agg(c.idx ORDER BY c.idx) AS idx,
       array_agg(c.node_id ORDER BY c.idx) AS node_ids,
       array_agg(c.checksum ORDER BY c.idx) AS checksums
FROM chunks c JOIN blobs b USING (blob_id)
WHERE b.state = 'committed' AND c.blob_id > $1
GROUP BY c.blob_id
ORDER BY c.blob_id
LIMIT $2
"""
COUNT_COMMITTED_BLOBS = "SELECT count(*) FROM blobs WHERE state = 'committed'"
# $1 blob_id, $2 idx, $3 source, $4 target
BEGIN_MOVE = """
INSERT INTO chunk_moves (blob_id, idx, source, target) VALUES ($1, $2, $3, $4)
ON CONFLICT (blob_id, idx) DO UPDATE SET source = excluded.source, target = excluded.target,
    started_at = now()
"""
# $1 blob_id, $2 idx
END_MOVE = "DELETE FROM chunk_moves WHERE blob_id = $1 AND idx = $2"
# Moves an interrupted rebalance left, with the node the chunk row names now (NULL: gone).
PENDING_MOVES = """
SELECT m.blob_id, m.idx, m.source, m.target, c.node_id AS current
FROM chunk_moves m LEFT JOIN chunks c ON c.blob_id = m.blob_id AND c.idx = m.idx
ORDER BY m.started_at
"""
# A chunk copied to its new node now lives there. Only if nothing moved it meanwhile and
# the blob is still committed. $1 blob_id, $2 idx, $3 from node, $4 to node -> 1 row
MOVE_CHUNK = """
UPDATE chunks c SET node_id = $4
FROM blobs b
WHERE c.blob_id = $1 AND c.idx = $2 AND c.node_id = $3
  AND b.blob_id = c.blob_id AND b.state = 'committed'
RETURNING c.blob_id
"""

# --- buckets --------------------------------------------------------------------------

# $1 name, $2 owner, $3 region -> row if created
CREATE_BUCKET = """
INSERT INTO buckets (name, owner, region) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
RETURNING name, owner, region, created_at
"""
GET_BUCKET = "SELECT name, owner, region, created_at FROM buckets WHERE name = $1"
LIST_BUCKETS = "SELECT name, owner, region, created_at FROM buckets ORDER BY name"
LIST_BUCKETS_OF_OWNER = (
    "SELECT name, owner, region, created_at FROM buckets WHERE owner = $1 ORDER BY name"
)
# $1 name -> (has_objects, has_uploads); locks the bucket row against concurrent deletes
LOCK_BUCKET_FOR_DELETE = """
SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = $1) AS has_objects,
       EXISTS (SELECT 1 FROM uploads WHERE bucket = $1) AS has_uploads
FROM buckets WHERE name = $1 FOR UPDATE
"""
DELETE_BUCKET = "DELETE FROM buckets WHERE name = $1"


def _key_lock(bucket: str, key: str) -> str:
    """The advisory-lock id of an object key, from the SQL expressions naming its bucket and
    key. Every statement that locks a key spells it through here: two spellings that hashed
    differently would let two writers of one key run at once."""
    return f"hashtextextended({bucket} || '/' || {key}, 0)"


# --- blobs and chunks -----------------------------------------------------------------

# The intent record: the blob and one chunk row per node, in one statement (atomic by
# itself, one round trip). $1 blob_id, $2 k, $3 m, $4 fragment_size, $5 idx[], $6 node_id[]
INSERT_BLOB = """
WITH blob AS (
    INSERT INTO blobs (blob_id, state, k, m, fragment_size)
    VALUES ($1, 'writing', $2, $3, $4)
    RETURNING blob_id
)
INSERT INTO chunks (blob_id, idx, node_id)
SELECT blob.blob_id, t.idx, t.node_id
FROM blob, unnest($5::smallint[], $6::text[]) AS t (idx, node_id)
"""
# $1 blob_id
HEARTBEAT_BLOB = "UPDATE blobs SET heartbeat_at = now() WHERE blob_id = $1 AND state = 'writing'"
# $1 blob_id
ABORT_BLOB = "UPDATE blobs SET state = 'aborted' WHERE blob_id = $1 AND state = 'writing'"
# The blob committed with its stored chunks' sizes and checksums, in one statement; the
# chunks are updated only if the blob was still being written.
# $1 blob_id, $2 size, $3 md5, $4 refs, $5 idx[], $6 size[], $7 checksum[], $8 frag_sums[]
# -> 1 row if the blob was still being written (else nothing changed)
COMMIT_BLOB = """
WITH done AS (
    UPDATE blobs SET state = 'committed', size = $2, md5 = $3, refs = $4
    WHERE blob_id = $1 AND state = 'writing'
    RETURNING blob_id
), stored AS (
    UPDATE chunks c SET size = t.size, checksum = t.checksum, frag_sums = t.frag_sums
    FROM done, unnest($5::smallint[], $6::bigint[], $7::bytea[], $8::bytea[])
         AS t (idx, size, checksum, frag_sums)
    WHERE c.blob_id = done.blob_id AND c.idx = t.idx
)
SELECT blob_id FROM done
"""
# $1 blob_id[] (one entry per reference dropped; duplicates count twice), $2 grace period
# (interval) during which GETs that resolved the old version can still finish reading it.
RELEASE_BLOBS = """
UPDATE blobs b
SET refs = b.refs - d.n,
    state = CASE WHEN b.refs - d.n <= 0 THEN 'deleting' ELSE b.state END,
    collect_after = now() + $2::interval
FROM (SELECT blob_id, count(*) AS n FROM unnest($1::uuid[]) AS blob_id GROUP BY blob_id) d
WHERE b.blob_id = d.blob_id AND b.state = 'committed'
"""
# $1 blob_id, $2 k, $3 m, $4 fragment_size, $5 size, $6 md5, $7 data: a small body kept in
# the row (schema version 5), committed at once with one reference (its object's, inserted
# in the same transaction). The statement first takes the lock of the object's key
# ($8 bucket, $9 key; as LOCK_KEY), so the transaction's next statements see the key's
# latest version, and the inline PutObject saves a round trip.
INSERT_INLINE_BLOB = f"""
WITH locked AS (SELECT pg_advisory_xact_lock({_key_lock("$8", "$9")}))
INSERT INTO blobs (blob_id, state, k, m, fragment_size, size, md5, refs, inline_data)
SELECT $1, 'committed', $2, $3, $4, $5, $6, 1, $7 FROM locked
"""
# $1 blob_id. Chunk columns are NULL for an inline blob (it has no chunk rows).
GET_BLOB = """
SELECT b.blob_id, b.k, b.m, b.fragment_size, b.size, b.inline_data,
       c.idx, c.node_ids, c.frag_sums, c.present
FROM blobs b
LEFT JOIN LATERAL (
    SELECT array_agg(idx ORDER BY idx) AS idx,
           array_agg(node_id ORDER BY idx) AS node_ids,
           array_agg(frag_sums ORDER BY idx) AS frag_sums,
           array_agg(size IS NOT NULL ORDER BY idx) AS present
    FROM chunks WHERE chunks.blob_id = b.blob_id
) c ON true
WHERE b.blob_id = $1 AND b.state IN ('committed', 'deleting')
"""

# --- objects --------------------------------------------------------------------------

_OBJECT_COLUMNS = """bucket, key, size, etag, last_modified, content_type, headers, user_meta,
       parts_count, part_blobs, part_sizes, checksums"""

# $1 bucket, $2 key
GET_OBJECT = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"

# GetObject and HeadObject in one round trip: the bucket (its owner decides access), the
# object row if any, and with $3 the body of an object kept inline in its one blob.
# No row: no bucket. $1 bucket, $2 key, $3 with_body
READ_OBJECT = f"""
SELECT bk.name, bk.owner, bk.region, bk.created_at, o.*, bl.inline_data
FROM buckets bk
LEFT JOIN LATERAL (
    SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = bk.name AND key = $2
) o ON true
LEFT JOIN LATERAL (
    SELECT inline_data FROM blobs
    WHERE $3 AND cardinality(o.part_blobs) = 1 AND blob_id = o.part_blobs[1]
      AND state IN ('committed', 'deleting')
) bl ON true
WHERE bk.name = $1
"""

# Serialises writers of one key inside their transaction, so that "read the old row, replace
# it, release its blobs" cannot interleave with another writer. $1 bucket, $2 key
LOCK_KEY = f"SELECT pg_advisory_xact_lock({_key_lock('$1', '$2')})"

# Two keys at once (CopyObject: source and destination), in one global order, so that two
# copies crossing each other's keys can never wait on each other in a cycle.
# $1 bucket[], $2 key[] (parallel)
LOCK_KEYS = f"""
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT {_key_lock("b", "k")} AS h
    FROM unnest($1::text[], $2::text[]) AS t (b, k)
    ORDER BY h
) ordered
"""

# A copy shares the source's blobs: one more reference each. Only committed blobs count;
# the caller holds the source key's lock, so its blobs cannot be released meanwhile.
# $1 blob_id[] (one entry per reference added) -> how many distinct blobs were updated
ADD_BLOB_REFS = """
WITH d AS (SELECT blob_id, count(*) AS n FROM unnest($1::uuid[]) AS blob_id GROUP BY blob_id),
updated AS (
    UPDATE blobs b SET refs = b.refs + d.n FROM d
    WHERE b.blob_id = d.blob_id AND b.state = 'committed'
    RETURNING b.blob_id
)
SELECT count(*) FROM updated
"""

# $1 bucket, $2 key -> the removed row's blobs
DELETE_OBJECT = "DELETE FROM objects WHERE bucket = $1 AND key = $2 RETURNING part_blobs"

# $1 bucket, $2 key, $3 size, $4 etag, $5 content_type, $6 headers, $7 user_meta,
# $8 parts_count, $9 part_blobs, $10 part_sizes, $11 checksums
INSERT_OBJECT = f"""
INSERT INTO objects (bucket, key, size, etag, content_type, headers, user_meta, parts_count,
                     part_blobs, part_sizes, checksums)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING {_OBJECT_COLUMNS}
"""

# DeleteObjects. $1 bucket, $2 key[] -> (key, part_blobs) of each object removed
DELETE_OBJECTS = """
DELETE FROM objects WHERE bucket = $1 AND key = ANY($2::text[]) RETURNING key, part_blobs
"""

# One page of keys for listing. $1 bucket, $2 exclusive lower bound (or NULL),
# $3 inclusive lower bound (prefix, or NULL), $4 exclusive upper bound (or NULL), $5 limit
LIST_KEYS = """
SELECT key, size, etag, last_modified FROM objects
WHERE bucket = $1
  AND ($2::text IS NULL OR key > $2::text)
  AND ($3::text IS NULL OR key >= $3::text)
  AND ($4::text IS NULL OR key < $4::text)
ORDER BY key
LIMIT $5
"""

# --- repair ---------------------------------------------------------------------------

# A chunk found missing or corrupt: it loses its size and checksum, which is how a chunk of
# a committed blob is marked for repair (a write that lost a node records it the same way).
# $1 blob_id, $2 idx, $3 node_id (only the copy that was found bad)
MARK_CHUNK_MISSING = """
UPDATE chunks SET size = NULL, checksum = NULL
WHERE blob_id = $1 AND idx = $2 AND node_id = $3
"""
# Chunks of committed blobs waiting for repair, a blob at a time. $1 limit (blobs)
CHUNKS_TO_REPAIR = """
SELECT c.blob_id, array_agg(c.idx ORDER BY c.idx) AS idx
FROM chunks c JOIN blobs b USING (blob_id)
WHERE b.state = 'committed' AND c.size IS NULL
GROUP BY c.blob_id
ORDER BY min(b.created_at)
LIMIT $1
"""
# The repaired chunk is back. Only while the blob is still committed: otherwise the caller
# deletes what it wrote. $1 blob_id, $2 idx, $3 node_id, $4 size, $5 checksum -> 1 row
CHUNK_REPAIRED = """
UPDATE chunks c SET node_id = $3, size = $4, checksum = $5
FROM blobs b
WHERE c.blob_id = $1 AND c.idx = $2 AND b.blob_id = c.blob_id AND b.state = 'committed'
RETURNING c.blob_id
"""
# Every stored chunk of committed blobs, in pages, for `s3compat scrub`.
# $1 after (blob_id, idx) as blob_id, $2 idx, $3 limit
CHUNKS_TO_SCRUB = """
SELECT c.blob_id, c.idx, c.node_id, c.size, c.checksum
FROM chunks c JOIN blobs b USING (blob_id)
WHERE b.state = 'committed' AND c.size IS NOT NULL AND (c.blob_id, c.idx) > ($1, $2)
ORDER BY c.blob_id, c.idx
LIMIT $3
"""
COUNT_CHUNKS_TO_SCRUB = """
SELECT count(*) FROM chunks c JOIN blobs b USING (blob_id)
WHERE b.state = 'committed' AND c.size IS NOT NULL
"""

# --- janitor --------------------------------------------------------------------------

# Writes whose gateway stopped heart-beating: abort them. $1 staleness (interval)
ABORT_STALE_WRITES = """
UPDATE blobs SET state = 'aborted'
WHERE state = 'writing' AND heartbeat_at < now() - $1::interval
"""
# Claim blobs to collect; SKIP LOCKED lets many gateways' janitors share the work without
# ever working on the same blob. Must run inside a transaction. $1 limit
CLAIM_BLOBS_TO_COLLECT = """
SELECT blob_id FROM blobs
WHERE state IN ('aborted', 'deleting') AND collect_after <= now()
ORDER BY collect_after
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
# $1 blob_id
CHUNKS_OF_BLOB = "SELECT idx, node_id FROM chunks WHERE blob_id = $1 ORDER BY idx"
# $1 blob_id, $2 idx[]
FORGET_CHUNKS = "DELETE FROM chunks WHERE blob_id = $1 AND idx = ANY($2::smallint[])"
# $1 blob_id
FORGET_BLOB = """
DELETE FROM blobs WHERE blob_id = $1 AND state IN ('aborted', 'deleting')
  AND NOT EXISTS (SELECT 1 FROM chunks WHERE blob_id = $1)
"""
# A node was unreachable: try this blob again later. $1 blob_id, $2 delay (interval)
DEFER_BLOB = "UPDATE blobs SET collect_after = now() + $2::interval WHERE blob_id = $1"

# --- multipart uploads ----------------------------------------------------------------

# $1 upload_id, $2 bucket, $3 key, $4 owner, $5 content_type, $6 headers, $7 user_meta,
# $8 checksum_algorithm
CREATE_UPLOAD = """
INSERT INTO uploads (upload_id, bucket, key, owner, content_type, headers, user_meta,
                     checksum_algorithm)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING upload_id, bucket, key, initiated, owner, content_type, headers, user_meta,
          checksum_algorithm
"""
_UPLOAD_COLUMNS = """upload_id, bucket, key, initiated, owner, content_type, headers, user_meta,
       checksum_algorithm"""
# $1 upload_id, $2 bucket, $3 key
GET_UPLOAD = f"""
SELECT {_UPLOAD_COLUMNS} FROM uploads
WHERE upload_id = $1 AND bucket = $2 AND key = $3 AND state = 'open'
"""
# Every change to an upload (a part committed, Complete, Abort) locks its row first, so
# they serialise: a part never lands in an upload that was completed or aborted, and two
# uploads of one part number never both think they replaced nothing.
# $1 upload_id, $2 bucket, $3 key
LOCK_UPLOAD = f"""
SELECT {_UPLOAD_COLUMNS} FROM uploads
WHERE upload_id = $1 AND bucket = $2 AND key = $3 AND state = 'open'
FOR UPDATE
"""
# $1 upload_id, $2 part_number, $3 blob_id, $4 size, $5 etag, $6 checksums
# -> the blob the part replaced, if any
UPSERT_PART = """
WITH old AS (
    SELECT blob_id FROM upload_parts WHERE upload_id = $1 AND part_number = $2 FOR UPDATE
), upsert AS (
    INSERT INTO upload_parts (upload_id, part_number, blob_id, size, etag, checksums)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (upload_id, part_number) DO UPDATE
    SET blob_id = excluded.blob_id, size = excluded.size, etag = excluded.etag,
        checksums = excluded.checksums, last_modified = now()
)
SELECT blob_id FROM old
"""
# UploadPartCopy of exactly one blob of the source: the part shares it. $1 blob_id, $2 size
# -> the blob's MD5 if it is still committed (and one reference was added)
ADD_PART_BLOB_REF = """
UPDATE blobs SET refs = refs + 1
WHERE blob_id = $1 AND state = 'committed' AND size = $2
RETURNING md5
"""
# $1 upload_id, $2 after part number, $3 limit
LIST_PARTS = """
SELECT part_number, blob_id, size, etag, checksums, last_modified FROM upload_parts
WHERE upload_id = $1 AND part_number > $2
ORDER BY part_number
LIMIT $3
"""
# Every part with its blob's binary MD5 (the object ETag is md5 of their concatenation).
# $1 upload_id
ALL_PARTS = """
SELECT p.part_number, p.blob_id, p.size, p.etag, p.checksums, b.md5
FROM upload_parts p JOIN blobs b USING (blob_id)
WHERE p.upload_id = $1
ORDER BY p.part_number
"""
# $1 upload_id -> the blobs of every part, for releasing
DELETE_UPLOAD = """
WITH parts AS (DELETE FROM upload_parts WHERE upload_id = $1 RETURNING blob_id)
SELECT array_agg(blob_id) FROM parts
"""
DELETE_UPLOAD_ROW = "DELETE FROM uploads WHERE upload_id = $1"
# ListMultipartUploads page. $1 bucket, $2 key after (exclusive, or NULL),
# $3 (key, upload id) after: key, $4 upload id (or NULL), $5 at_least, $6 below, $7 limit
LIST_UPLOADS = """
SELECT upload_id, key, initiated, owner FROM uploads
WHERE bucket = $1 AND state = 'open'
  AND ($2::text IS NULL OR key > $2::text)
  AND ($3::text IS NULL OR (key, upload_id::text) > ($3::text, $4::text))
  AND ($5::text IS NULL OR key >= $5::text)
  AND ($6::text IS NULL OR key < $6::text)
ORDER BY key, upload_id::text
LIMIT $7
"""
# Uploads past their bucket's lifecycle TTL or the cluster default. $1 default TTL, $2 limit
EXPIRED_UPLOADS = """
SELECT u.upload_id, u.bucket, u.key FROM uploads u JOIN buckets b ON b.name = u.bucket
WHERE u.state = 'open' AND u.initiated < now() - coalesce(b.upload_ttl, $1::interval)
ORDER BY u.initiated
LIMIT $2
"""

# --- bucket lifecycle -----------------------------------------------------------------

# The rules and the upload TTL they imply change together, in one statement.
# $1 name, $2 lifecycle (jsonb, or NULL to delete), $3 upload TTL (interval, or NULL)
# -> a row if the bucket exists
SET_BUCKET_LIFECYCLE = """
UPDATE buckets SET lifecycle = $2, upload_ttl = $3 WHERE name = $1
RETURNING name
"""
# $1 name -> the rules, or no row if the bucket does not exist
GET_BUCKET_LIFECYCLE = "SELECT lifecycle FROM buckets WHERE name = $1"

# --- users and access keys ------------------------------------------------------------

# $1 name -> row if created
INSERT_USER = """
INSERT INTO users (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING name
"""
# $1 access_key, $2 user_name, $3 secret_enc
INSERT_ACCESS_KEY = """
INSERT INTO access_keys (access_key, user_name, secret_enc) VALUES ($1, $2, $3)
"""
# -> every user with its access keys (an empty array for none)
LIST_USERS = """
SELECT u.name, u.created_at,
       coalesce(array_agg(k.access_key ORDER BY k.access_key)
                FILTER (WHERE k.access_key IS NOT NULL), '{}') AS access_keys
FROM users u LEFT JOIN access_keys k ON k.user_name = u.name
GROUP BY u.name, u.created_at
ORDER BY u.name
"""
# $1 name -> row if the user exists; locks it against a concurrent add of a key
LOCK_USER = "SELECT name FROM users WHERE name = $1 FOR UPDATE"
# $1 owner -> bucket names
BUCKETS_OF_OWNER = "SELECT name FROM buckets WHERE owner = $1 ORDER BY name"
# $1 name (its access keys go with it: ON DELETE CASCADE)
DELETE_USER = "DELETE FROM users WHERE name = $1"
# -> every stored key, still encrypted
ALL_ACCESS_KEYS = "SELECT access_key, user_name, secret_enc FROM access_keys"
