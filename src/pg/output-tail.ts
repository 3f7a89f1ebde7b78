/** The last `lines` lines of a program's output or log, for an error message. */
export function outputTail(output: string | undefined, lines: number): string {
  return (output ?? "").trim().split("\n").slice(-lines).join("\n");
}
