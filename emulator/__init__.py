"""Local stand-ins for the platform's infrastructure, over one SQLite store file: Workers KV (and D1 in a file of
its own), and the Stripe, Clerk and Cloudflare REST subsets the platform uses, served by one web app
(`emulator.app`) in-process or over loopback (`dream emulator serve`)."""
