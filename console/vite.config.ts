// The console is built into the server's static directory and served at /app/console/ by
// the server itself: no CDN, nothing loaded from elsewhere at run time (the pages' CSP says
// 'self' only). `make console` runs this; the built files are not committed.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/console/",
  build: {
    outDir: "../commandcenter/static/console",
    emptyOutDir: true,
    // Stable names would be cached across releases; hashed names are safe to cache.
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    // No inline <script> for the module preload polyfill: script-src 'self' forbids it.
    modulePreload: { polyfill: false },
    // Two pages: the console, and the accounts admin page (src/admin/).
    rollupOptions: { input: { console: "index.html", admin: "admin.html" } },
  },
});
