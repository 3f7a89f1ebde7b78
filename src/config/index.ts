export { envVarOf, formatUsage, parseFlags, type FlagSpec, type FlagSpecs, type FlagType, type FlagValues, type ParsedFlags } from "./flags.js";
export { defineFlags, exitWithUsageError, parseCommandLine, type CommandLineIo, type Program } from "./parse-command-line.js";
export {
  compileServerConfig,
  compileServiceConfig,
  logLevelNames,
  parseListen,
  parseS3ConditionalWrites,
  serverFlags,
  serviceFlags,
  servicePorts,
  type LogLevelName,
  type ServerConfig,
  type ServerFlagValues,
  type ServiceConfig,
  type ServiceFlagValues,
  type ServiceName,
} from "./service-flags.js";
export { checkWritableDir, exitUnlessWritableDirs, storageDirs, type NeededDir } from "./check-writable-dir.js";
export { parseDurationSec } from "./duration.js";
export { UsageError } from "./usage-error.js";
