import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'

t.test('defaults', async (t) => {
  const config = loadConfig({}, null)
  t.equal(config.port, 3000, 'PORT defaults to 3000')
  t.equal(config.host, '127.0.0.1', 'HOST defaults to loopback')
  t.match(config.dbPath, /data\/nonstop\.db$/, 'DB_PATH defaults to ./data/nonstop.db')
  t.ok(config.maxConcurrency >= 1, 'MAX_CONCURRENCY defaults to the cores')
  t.equal(config.maxAttempts, 3, 'MAX_ATTEMPTS defaults to 3')
  t.equal(config.maxPending, 10000, 'MAX_PENDING defaults to 10000')
  t.equal(config.logFile, undefined, 'logs to stdout by default')
  t.ok(Object.isFrozen(config), 'config is frozen')
})

t.test('values are parsed', async (t) => {
  const config = loadConfig({ PORT: '8080', HOST: '0.0.0.0', MAX_CONCURRENCY: '4', LOG_LEVEL: 'debug', LOG_FILE: '/tmp/x.log', WARM_SPARE: 'false' }, null)
  t.equal(config.port, 8080, 'PORT')
  t.equal(config.host, '0.0.0.0', 'HOST')
  t.equal(config.maxConcurrency, 4, 'MAX_CONCURRENCY')
  t.equal(config.logLevel, 'debug', 'LOG_LEVEL')
  t.equal(config.logFile, '/tmp/x.log', 'LOG_FILE')
  t.equal(config.warmSpare, false, 'WARM_SPARE')
})

t.test('invalid values are refused with a message naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /PORT must be an integer/],
    [{ PORT: '70000' }, /PORT must be between/],
    [{ MAX_CONCURRENCY: '0' }, /MAX_CONCURRENCY must be between/],
    [{ MAX_CONCURRENCY: '1.5' }, /MAX_CONCURRENCY must be an integer/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
    [{ WARM_SPARE: 'maybe' }, /WARM_SPARE must be true or false/],
    [{ LEASE_MS: '1000', HEARTBEAT_MS: '800' }, /LEASE_MS .* at least twice HEARTBEAT_MS/],
    [{ STOP_GRACE_MS: '1500' }, /STOP_GRACE_MS \(1500\) must be at least twice HEARTBEAT_MS \(1000\)/],
    [{ SHUTDOWN_GRACE_MS: '1000', HEARTBEAT_MS: '600', LEASE_MS: '5000' }, /SHUTDOWN_GRACE_MS \(1000\) must be at least twice HEARTBEAT_MS \(600\)/],
    [{ HEARTBEAT_MS: '2000' }, /STOP_GRACE_MS \(3000\) must be at least twice HEARTBEAT_MS \(2000\)/]
  ]
  for (const [env, message] of cases) t.throws(() => loadConfig(env, null), { name: 'ConfigError', message }, JSON.stringify(env))
  t.throws(() => loadConfig({ PORT: 'x' }, null), ConfigError, 'is a ConfigError')
  t.equal(loadConfig({ HEARTBEAT_MS: '100', STOP_GRACE_MS: '200', SHUTDOWN_GRACE_MS: '200' }, null).stopGraceMs, 200, 'two heartbeats of grace are enough')
})

t.test('.env is read, and the real environment wins over it', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, '.env')
  writeFileSync(file, 'PORT=4000\nMAX_ATTEMPTS=5\n# comment\n')
  const config = loadConfig({ MAX_ATTEMPTS: '7' }, file)
  t.equal(config.port, 4000, 'value from .env')
  t.equal(config.maxAttempts, 7, 'environment overrides .env')
})
