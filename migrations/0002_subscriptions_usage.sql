-- Subscriptions of customers (from the connected accounts' webhooks) and daily usage (the dashboard's chart).
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,                 -- Stripe subscription id
    platform_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,           -- Clerk user id (end-user-api)
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL DEFAULT 0,   -- per month, smallest currency unit
    currency TEXT NOT NULL DEFAULT 'usd',
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX subscriptions_platform_status ON subscriptions (platform_id, status);

CREATE TABLE usage_daily (
    platform_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    day TEXT NOT NULL,                   -- YYYY-MM-DD (UTC)
    calls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform_id, customer_id, day)
);
CREATE INDEX usage_daily_platform_day ON usage_daily (platform_id, day);
