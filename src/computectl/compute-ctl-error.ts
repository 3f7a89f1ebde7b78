import { ConnectError } from "@connectrpc/connect";

/**
 * Base of compute-ctl's typed errors. They are ConnectErrors (their code
 * reaches the client) and keep the name "ConnectError", which connect's own
 * instanceof check relies on; `instanceof SpecError` etc. still works because
 * this class restores the ordinary prototype check for its subclasses.
 */
export class ComputeCtlError extends ConnectError {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}
