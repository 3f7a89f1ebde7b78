export { TimelineCtl, type TimelineSummary } from "./timeline-ctl.js";
export {
  compileTimelineCtlOptions, defaultFileChunkGraceMs, defaultPitrRetentionMs, TimelineCtlOptionsError,
  type CompiledTimelineCtlOptions, type TimelineCtlOptions,
} from "./timeline-ctl-options.js";
export { createTimelineHandlers } from "./timeline-handlers.js";
export { runTimelineCommand } from "./timeline-command.js";
