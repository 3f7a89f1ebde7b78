export { backoffDelayMs, retryWithBackoff, type BackoffPolicy, type RetryHooks } from "./retry-with-backoff.js";
