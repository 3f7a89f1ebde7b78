#!/usr/bin/env node
// pgmesh-token: make dev key pairs and mint bearer tokens by hand (see --help).
import { runTokenCommand } from "../src/auth/index.js";

await runTokenCommand();
