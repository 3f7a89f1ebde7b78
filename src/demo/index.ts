export { describeStartup, runDemo, type DemoOptions, type RunningDemo } from "./run-demo.js";
export { MeshProcess, startMeshProcess, type MeshProcessOptions } from "./mesh-process.js";
