-- s3compat metadata schema.
--
-- Applied automatically at start by s3compat.metadata.migrate: each "-- version: N" section
-- runs once, in order, inside one transaction that also records N in schema_version, under
-- an advisory lock so that many gateways starting together apply it exactly once.
-- Never edit a released section: add a new one.
--
-- Keys are text COLLATE "C": PostgreSQL then orders them by code point, which for UTF-8 is
-- the byte order S3 lists in.

-- version: 1

CREATE TABLE nodes (
    node_id     text PRIMARY KEY,
    address     text NOT NULL,
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'down')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE buckets (
    name        text COLLATE "C" PRIMARY KEY,
    owner       text NOT NULL,
    region      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Lifecycle AbortIncompleteMultipartUpload: uploads older than this are aborted.
    upload_ttl  interval
);

-- An immutable run of bytes (an object's body or one multipart part), cut into six chunks.
-- Life cycle: writing -> committed -> deleting -> (row removed once its chunks are gone),
--             writing -> aborted -> (row removed once its chunks are gone).
-- refs counts the objects and upload parts that point at a committed blob; it reaching zero
-- moves the blob to 'deleting' in the same transaction, so collection never races a reader
-- that resolved the blob through committed metadata.
CREATE TABLE blobs (
    blob_id        uuid PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('writing', 'committed', 'aborted', 'deleting')),
    k              smallint NOT NULL,
    m              smallint NOT NULL,
    fragment_size  integer NOT NULL,
    size           bigint,
    md5            bytea,
    refs           integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Refreshed by the writing gateway; a 'writing' blob whose heartbeat is stale belongs to
    -- a gateway that died mid-write and is aborted by the janitor.
    heartbeat_at   timestamptz NOT NULL DEFAULT now(),
    -- When the janitor may next try to collect it (a node being down pushes this back).
    collect_after  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blobs_to_collect ON blobs (collect_after) WHERE state IN ('aborted', 'deleting');
CREATE INDEX blobs_writing ON blobs (heartbeat_at) WHERE state = 'writing';

-- Intent record: one row per chunk, written with its node before any byte is sent, so an
-- interrupted write's chunks can always be found without scanning the nodes.
CREATE TABLE chunks (
    blob_id    uuid NOT NULL REFERENCES blobs ON DELETE CASCADE,
    idx        smallint NOT NULL,
    node_id    text NOT NULL REFERENCES nodes,
    size       bigint,
    checksum   bytea,   -- xxh3_128 of the whole chunk, confirmed by the node
    frag_sums  bytea,   -- xxh3_64 of each stored fragment, in order (8 bytes each)
    PRIMARY KEY (blob_id, idx)
);
-- Ranged reads fetch a slice of frag_sums; uncompressed out-of-line storage lets PostgreSQL
-- read just that slice.
ALTER TABLE chunks ALTER COLUMN frag_sums SET STORAGE EXTERNAL;

-- The current version of each key. An object is a list of blobs (one for PutObject, one per
-- part for multipart uploads) kept as parallel arrays in the row itself, so replacing an
-- object is a single-row change and reading one needs no join.
CREATE TABLE objects (
    bucket         text COLLATE "C" NOT NULL REFERENCES buckets (name),
    key            text COLLATE "C" NOT NULL,
    size           bigint NOT NULL,
    etag           text NOT NULL,
    last_modified  timestamptz NOT NULL DEFAULT now(),
    content_type   text,
    headers        jsonb NOT NULL DEFAULT '{}',
    user_meta      jsonb NOT NULL DEFAULT '{}',
    checksums      jsonb,
    parts_count    integer,
    part_blobs     uuid[] NOT NULL,
    part_sizes     bigint[] NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE uploads (
    upload_id      uuid PRIMARY KEY,
    bucket         text COLLATE "C" NOT NULL REFERENCES buckets (name),
    key            text COLLATE "C" NOT NULL,
    initiated      timestamptz NOT NULL DEFAULT now(),
    owner          text NOT NULL,
    content_type   text,
    headers        jsonb NOT NULL DEFAULT '{}',
    user_meta      jsonb NOT NULL DEFAULT '{}',
    checksum_algorithm text,
    state          text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completing'))
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, initiated);

CREATE TABLE upload_parts (
    upload_id    uuid NOT NULL REFERENCES uploads ON DELETE CASCADE,
    part_number  integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    blob_id      uuid NOT NULL REFERENCES blobs,
    size         bigint NOT NULL,
    etag         text NOT NULL,
    checksums    jsonb,
    last_modified timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, part_number)
);

-- version: 2

-- PutBucketLifecycleConfiguration's rules, as given, so Get can answer with them. Only
-- AbortIncompleteMultipartUpload rules are accepted; the TTL they imply is kept in
-- upload_ttl (version 1), which the janitor reads.
ALTER TABLE buckets ADD COLUMN lifecycle jsonb;

-- version: 3

-- Users managed with `s3compat admin user …`, and their access keys. A secret key is kept
-- only encrypted (AES-256-GCM under S3COMPAT_MASTER_KEY, the access key as associated data:
-- see s3compat/metadata/keycrypt.py), never in plain text: signatures need the plain
-- secret, so it cannot be hashed.
CREATE TABLE users (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE access_keys (
    access_key  text PRIMARY KEY,
    user_name   text NOT NULL REFERENCES users ON DELETE CASCADE,
    secret_enc  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_keys_by_user ON access_keys (user_name);

-- version: 4

-- Intent record of `s3compat rebalance`: written before a chunk is copied to its new node,
-- removed once the old copy is deleted. A rebalance that was interrupted leaves rows here,
-- and the next run finishes them: if the chunk row already names the target, the source
-- copy is deleted; if it still names the source, the partial target copy is; if the blob
-- is gone, both are. No copy is ever orphaned.
CREATE TABLE chunk_moves (
    blob_id     uuid NOT NULL,
    idx         smallint NOT NULL,
    source      text NOT NULL,
    target      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blob_id, idx)
);

-- version: 5

-- Small PutObject bodies (up to S3COMPAT_INLINE_MAX bytes) are kept here, in the blob row,
-- instead of as six chunks: a few KiB would otherwise cost six node round trips and six
-- fsyncs. Such a blob has no chunk rows; it is committed in the same transaction as its
-- object and collected like any other blob (no chunk to delete). The metadata is already
-- the one copy without which no object can be found, so its durability is PostgreSQL's.
ALTER TABLE blobs ADD COLUMN inline_data bytea;
