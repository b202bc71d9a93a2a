import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'

/**
 * The one Ajv configuration of the server. Bodies are taken as sent (`coerceTypes: false`): a string is not a
 * number, and an unknown field is an error, not silently dropped. Job-type params schemas are compiled with the
 * body settings too, at load, so a schema Ajv refuses is found when the server starts, not at the first submit.
 */
/** Marks a params property, or an array's items, as ids of stored matrices (see createAjv). */
export const MATRIX_ID_KEYWORD = 'x-matrix-id'

export function createAjv (options: AjvOptions = {}): Ajv {
  const ajv = new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, coerceTypes: false, ...options })
  addFormats.default(ajv)
  // An annotation, not a rule: a params property (or array items) holding ids of stored matrices. The dashboard's
  // form shows a picker of the stored matrices for it.
  ajv.addKeyword({ keyword: MATRIX_ID_KEYWORD, schemaType: 'boolean' })
  return ajv
}
