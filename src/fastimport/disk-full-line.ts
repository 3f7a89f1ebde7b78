/**
 * The first line of `text` that says a file could not be written for lack of
 * space. Lines about shared memory (/dev/shm, a machine-wide limit) do not
 * count: they are not about the working directory.
 */
export function diskFullLine(text: string): string | undefined {
  return text
    .split("\n")
    .find((line) => /No space left on device|could not extend file|ENOSPC/i.test(line) && !/shared memory/i.test(line))
    ?.trim();
}
