/** A walredo process could not be started, or died before it answered its first ping. */
export class RedoProcessStartError extends Error {
  constructor(message: string, readonly stderrTail: string) {
    super(stderrTail ? `${message}; its stderr ends with:\n${stderrTail}` : message);
    this.name = "RedoProcessStartError";
  }
}

/** The walredo process is gone: every call outstanding or made after its exit rejects with this. */
export class RedoProcessExitedError extends Error {
  constructor(
    readonly pid: number,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderrTail: string,
    readonly reason: string | undefined,
  ) {
    super(`walredo process ${pid} exited (${signal ? `signal ${signal}` : `code ${code}`})${reason ? `: ${reason}` : ""}`);
    this.name = "RedoProcessExitedError";
  }
}
