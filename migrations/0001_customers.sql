-- The platform's queryable copy of its developers' customers (the guide's "D1 customers table").
-- KV stays the runtime source; D1 is for the dashboard (dual write).
CREATE TABLE customers (
    id TEXT PRIMARY KEY,                 -- Clerk user id in the end-user-api instance
    platform_id TEXT NOT NULL,           -- plt_...: stable across key rotations
    publishable_key TEXT NOT NULL,       -- the key the customer was created under
    email TEXT,
    name TEXT,
    plan TEXT NOT NULL DEFAULT 'free',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX customers_platform_plan ON customers (platform_id, plan);
CREATE INDEX customers_platform_created ON customers (platform_id, created_at);
