// Money in the panel is exact: integer micro-CPT as BigInt, formatted and parsed with string arithmetic.
// A JS number never carries an amount (api.js turns every *_micro field into a BigInt as it parses JSON).

export const MICRO_PER_CPT = 1_000_000n;
const DECIMALS = 6;

function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** "1,234.5 CPT" from 1234500000n: every significant digit, at least two decimals, never rounded. */
export function formatCpt(micro, { unit = true, sign = false } = {}) {
  const value = toBigInt(micro);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = groupThousands((abs / MICRO_PER_CPT).toString());
  let frac = (abs % MICRO_PER_CPT).toString().padStart(DECIMALS, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  const prefix = negative ? "−" : sign && abs > 0n ? "+" : "";
  return `${prefix}${whole}.${frac}${unit ? " CPT" : ""}`;
}

/** "12,345 µCPT": a raw micro amount, for prices that are tiny per second. */
export function formatMicro(micro) {
  const value = toBigInt(micro);
  const text = groupThousands((value < 0n ? -value : value).toString());
  return `${value < 0n ? "−" : ""}${text} µCPT`;
}

export function toBigInt(value) {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  throw new TypeError(`not an exact integer amount: ${value}`);
}

export class AmountError extends Error {}

/**
 * Parse what a person typed ("12", "12.5", "1,000.000001", " 0.25 CPT") into micro-CPT (BigInt).
 * Throws AmountError with a sentence they can act on; nothing is rounded.
 */
export function parseCpt(text, { allowZero = false, max = 1_000_000_000n * MICRO_PER_CPT } = {}) {
  const cleaned = String(text).trim().replace(/\s*CPT$/i, "").replace(/[\s,_]/g, "");
  if (cleaned === "") throw new AmountError("Enter an amount in CPT, for example 12.5.");
  const match = /^(\d*)(?:\.(\d*))?$/.exec(cleaned);
  if (!match || (match[1] === "" && (match[2] ?? "") === "")) {
    throw new AmountError(`"${String(text).trim()}" is not an amount. Use digits and one decimal point, for example 12.5.`);
  }
  const [, whole, frac = ""] = match;
  if (frac.length > DECIMALS) {
    throw new AmountError("CPT has at most 6 decimal places (1 µCPT = 0.000001 CPT).");
  }
  const micro = BigInt(whole || "0") * MICRO_PER_CPT + BigInt(frac.padEnd(DECIMALS, "0") || "0");
  if (micro === 0n && !allowZero) throw new AmountError("The amount must be more than zero.");
  if (micro > max) throw new AmountError(`The amount may be at most ${formatCpt(max)}.`);
  return micro;
}

/** Parse a whole number of micro-CPT typed into a price field. */
export function parseMicroInteger(text, label) {
  const cleaned = String(text).trim().replace(/[\s,_]/g, "");
  if (!/^\d+$/.test(cleaned)) throw new AmountError(`${label} must be a whole number of µCPT (0 or more).`);
  return BigInt(cleaned);
}
