-- Which hash an entry carries (services/audit/chain.py): 1, unkeyed SHA-256, for the entries
-- written before this migration (the trail is never rewritten); 2, HMAC-SHA-256, for all new
-- ones, which the writer names explicitly.
ALTER TABLE trail ADD COLUMN hash_version smallint NOT NULL DEFAULT 1
    CHECK (hash_version IN (1, 2));
ALTER TABLE trail ALTER COLUMN hash_version DROP DEFAULT;
