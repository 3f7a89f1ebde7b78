/** The bundle could not be built; the output directory was left as it was. */
export class BundleBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BundleBuildError";
  }
}
