// Prints test.sh's closing lines: node print-vitest-summary.js REPORT.json EXIT_STATUS
import { readFile } from "node:fs/promises";
import { vitestSummary, type VitestJsonReport } from "./vitest-summary.js";

const [reportFile, exitStatus] = process.argv.slice(2);
const text = await readFile(reportFile!, "utf8").catch(() => "");
const report = text ? (JSON.parse(text) as VitestJsonReport) : undefined;
console.log(vitestSummary(report, Number(exitStatus), process.cwd()).join("\n"));
