export { checkExtensionName, checkPgMajor, checkResourceId, extensionNameProblem, resourceIdPattern, resourceIdProblem } from "./shared-ids.js";
