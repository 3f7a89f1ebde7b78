import { create } from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  RedoResponseSchema, WalRedoService, type RedoRequest as RedoRequestMessage, type RedoResponse,
} from "../../gen/pgmesh/walredo/v1/walredo_pb.js";
import { requireClaims, requireScope } from "../auth/index.js";
import { resolveUnprivilegedUser } from "../pg/index.js";
import { checkResourceId } from "../ids/index.js";
import { checkPgMajor, validateRedoRequest, type RedoRequestFields } from "./validate-redo-request.js";
import { initdbArchive } from "./initdb-archive.js";
import type { RedoProcessPool } from "./process-pool.js";
import type { CompiledWalRedoOptions } from "./walredo-options.js";
import { RedoFailedError } from "./walredo-errors.js";

/** Requests of one Redo stream that may be unanswered at once; beyond it the stream stops reading. */
const MAX_UNANSWERED_PER_STREAM = 1024;

/** Walredo is called by storage services: control_plane tokens (admin satisfies it). */
function authorize(ctx: HandlerContext): void {
  requireScope(requireClaims(ctx), "control_plane");
}

function toConnectError(err: unknown): ConnectError {
  if (err instanceof RedoFailedError) return new ConnectError(err.message, err.code);
  return ConnectError.from(err);
}

/**
 * The WalRedo service over a process pool. Every request is validated
 * before it reaches a process (INVALID_ARGUMENT).
 */
export function createWalRedoService(options: CompiledWalRedoOptions, pool: RedoProcessPool): ServiceImpl<typeof WalRedoService> {
  const redo = async (fields: RedoRequestFields): Promise<Uint8Array> => {
    const valid = validateRedoRequest(fields, options);
    try {
      return await pool.redo(valid);
    } catch (err) {
      throw toConnectError(err);
    }
  };

  const answer = async (message: RedoRequestMessage): Promise<RedoResponse> => {
    try {
      const page = await redo(message);
      return create(RedoResponseSchema, { requestId: message.requestId, result: { case: "page", value: page } });
    } catch (err) {
      const error = toConnectError(err);
      return create(RedoResponseSchema, {
        requestId: message.requestId,
        result: { case: "error", value: { code: error.code, message: error.rawMessage } },
      });
    }
  };

  return {
    async *redo(requests, ctx) {
      authorize(ctx);
      const answered: RedoResponse[] = [];
      let inFlight = 0;
      let inputDone = false;
      let inputFailure: unknown;
      let wake!: () => void;
      let changed = new Promise<void>((resolve) => (wake = resolve));
      const notify = (): void => {
        const resolve = wake;
        changed = new Promise<void>((r) => (wake = r));
        resolve();
      };
      const reading = (async () => {
        try {
          for await (const message of requests) {
            while (inFlight + answered.length >= MAX_UNANSWERED_PER_STREAM) await changed;
            inFlight++;
            void answer(message).then((response) => {
              inFlight--;
              answered.push(response);
              notify();
            });
          }
        } catch (err) {
          inputFailure = err;
        } finally {
          inputDone = true;
          notify();
        }
      })();
      for (;;) {
        while (answered.length > 0) {
          const response = answered.shift()!;
          notify();
          yield response;
        }
        if (inputFailure !== undefined && !ctx.signal.aborted) throw ConnectError.from(inputFailure);
        if (inputDone && inFlight === 0) break;
        await changed;
      }
      await reading;
    },

    async redoPage(request, ctx) {
      authorize(ctx);
      return { page: await redo(request) };
    },

    async ping(request, ctx) {
      authorize(ctx);
      checkResourceId("tenant_id", request.tenantId);
      checkPgMajor(request.pgMajor, options);
      try {
        return { roundTripUs: BigInt(await pool.ping(request.tenantId, request.pgMajor)) };
      } catch (err) {
        throw toConnectError(err);
      }
    },

    async *initdb(request, ctx) {
      authorize(ctx);
      checkPgMajor(request.pgMajor, options);
      const user = await resolveUnprivilegedUser(options.user);
      for await (const chunk of initdbArchive({
        bundleDir: options.bundleDir,
        pgMajor: request.pgMajor,
        user,
        superuser: request.superuser || "cloud_admin",
        locale: request.locale || "C.UTF-8",
        encoding: request.encoding || "UTF8",
        signal: ctx.signal,
        ...(options.scratchRoot ? { tempRoot: options.scratchRoot } : {}),
      })) {
        yield { chunk };
      }
    },
  };
}
