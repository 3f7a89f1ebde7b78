/** An Epufs option (flag) with a value that cannot work. */
export class EpufsOptionsError extends Error {
  constructor(
    readonly flag: string,
    reason: string,
  ) {
    super(`${flag} ${reason}`);
    this.name = "EpufsOptionsError";
  }
}
