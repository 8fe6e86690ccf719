"""The web console (`dream console`): dream's views and actions in a browser, over the same core functions the
CLI calls (dreamcli.platform, emulator), served on 127.0.0.1 only.

- `security`: the one-time sign-in, the session cookie, CSRF, the response headers (CSP with no inline script);
- `pages`: the routes, one per page and action, rendered with Jinja2 (autoescaped) from `templates/`;
- `browse`: the page queries the CLI has no command for (KV and vendor listings, a page at a time, in SQL);
- `jobs`: verify and repair in a background thread, their progress streamed to the page (server-sent events);
- `charts`: SVG drawn on the server (no script, no external request)."""
