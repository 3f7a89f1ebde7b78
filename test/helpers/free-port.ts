// Tests import the free-port helper from here; the implementation lives in src/net.
export { freePort } from "../../src/net/free-port.js";
