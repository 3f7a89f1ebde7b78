#!/usr/bin/env node
// pgmesh-timeline: list, branch, delete and garbage-collect timelines in a store (see --help).
import { runTimelineCommand } from "../src/timelinectl/index.js";

await runTimelineCommand();
