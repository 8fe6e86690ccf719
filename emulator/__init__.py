"""Local stand-ins for the platform's infrastructure: SQLite KV + D1, and (later) Stripe, Clerk, Cloudflare REST."""
