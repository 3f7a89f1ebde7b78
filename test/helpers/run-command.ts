import type { CommandLineIo } from "../../src/config/index.js";

/** What a command wrote and the code it exited with (0 when it returned normally). */
export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * Runs a command-line entry point in-process with the given argv and env,
 * capturing its output; its exit() ends the run instead of the process.
 */
export async function runCommand(
  main: (io: CommandLineIo) => unknown,
  argv: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<CommandResult> {
  let stdout = "";
  let stderr = "";
  const io: CommandLineIo = {
    argv,
    env,
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    exit: (code) => {
      throw new Exit(code);
    },
  };
  try {
    await main(io);
    return { stdout, stderr, code: 0 };
  } catch (err) {
    if (err instanceof Exit) return { stdout, stderr, code: err.code };
    throw err;
  }
}
