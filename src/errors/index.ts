export { maxQuotedChars, quoteInput } from "./quote-input.js";
