import { relative } from "node:path";

/** The parts of vitest's JSON report (`--reporter=json`) the closing line reads. */
export interface VitestJsonReport {
  readonly numPassedTests: number;
  readonly numFailedTests: number;
  readonly numPendingTests: number;
  readonly numTodoTests: number;
  readonly testResults: readonly {
    readonly name: string;
    readonly status: string;
    readonly message: string;
    readonly assertionResults: readonly { readonly status: string }[];
  }[];
}

const messageLines = 6;

/**
 * The lines test.sh closes with. A test file that failed without a failed test
 * (it did not load, or a suite's hook threw) counts as one failure and gets a
 * line of its own; so does a non-zero exit the report does not explain
 * (vitest's unhandled errors are not in its JSON report). `report` is
 * undefined when vitest wrote none.
 */
export function vitestSummary(report: VitestJsonReport | undefined, exitStatus: number, root: string): string[] {
  if (!report) return [`vitest: no JSON report; vitest exited with status ${exitStatus} (see its output above)`];
  const lines: string[] = [];
  const failedOutsideTests = report.testResults.filter(
    (file) => file.status === "failed" && !file.assertionResults.some((test) => test.status === "failed"),
  );
  for (const file of failedOutsideTests) {
    const reason = file.message ? file.message.split("\n").slice(0, messageLines) : ["a suite's hook threw (see the output above)"];
    lines.push(`failed outside its tests: ${relative(root, file.name)}`, ...reason.map((line) => `  ${line}`));
  }
  const failed = report.numFailedTests + failedOutsideTests.length;
  if (failed === 0 && exitStatus !== 0) {
    lines.push(`vitest exited with status ${exitStatus} although every test passed: see "Unhandled Errors" above`);
  }
  const skipped = report.numPendingTests + report.numTodoTests;
  lines.push(`vitest: ${report.numPassedTests} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  return lines;
}
