import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'

/**
 * The one Ajv configuration of the server. Bodies are taken as sent (`coerceTypes: false`): a string is not a
 * number, and an unknown field is an error, not silently dropped. Job-type params schemas are compiled with the
 * body settings too, at load, so a schema Ajv refuses is found when the server starts, not at the first submit.
 */
export function createAjv (options: AjvOptions = {}): Ajv {
  const ajv = new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, coerceTypes: false, ...options })
  addFormats.default(ajv)
  return ajv
}
