import neostandard from 'neostandard'

// The style Fastify's own code uses (no semicolons, space before function parentheses), with TypeScript rules.
export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', '.tap/**', 'data/**', 'coverage/**', 'tmp/**', 'bench/results/**']
  }),
  {
    // The dashboard runs in the browser.
    files: ['public/**/*.js'],
    languageOptions: { globals: { EventSource: 'readonly' } }
  }
]
