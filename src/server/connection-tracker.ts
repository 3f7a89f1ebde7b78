import type { IncomingMessage, ServerResponse } from "node:http";
import { constants as http2Constants, type Http2ServerRequest, type Http2ServerResponse, type Http2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Knows every connection and in-flight request of one server, so close()
 * can stop politely: GOAWAY to HTTP/2 sessions, end idle HTTP/1.1
 * connections at once and busy ones after their response, wait for requests,
 * then cut what is left.
 */
export class ConnectionTracker {
  #inFlight = 0;
  #draining = false;
  #changed: (() => void) | undefined; // wakes #waitFor() when a request or a connection ends
  readonly #sockets = new Set<Socket>();
  readonly #h2Sockets = new WeakSet<Socket>();
  readonly #sessions = new Set<Http2Session>();
  readonly #http1Busy = new Map<Socket, number>();

  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Wraps a request handler so its requests count as in flight until their response closes.
   * An HTTP/2 response that is complete while the client is still sending (a client stream
   * answered early) resets the rest of the request with RST_STREAM(NO_ERROR), as gRPC servers
   * do: otherwise the stream stays half-open, blocked on flow control, and never closes.
   */
  track(handler: (req: AnyRequest, res: AnyResponse) => void): (req: AnyRequest, res: AnyResponse) => void {
    return (req, res) => {
      this.#inFlight++;
      const socket = "stream" in req ? undefined : req.socket;
      if (socket) this.#http1Busy.set(socket, (this.#http1Busy.get(socket) ?? 0) + 1);
      else resetUnreadRequestWhenAnswered((req as Http2ServerRequest).stream);
      res.once("close", () => {
        if (socket) this.#http1Done(socket);
        this.#inFlight--;
        this.#changed?.();
      });
      handler(req, res);
    };
  }

  #http1Done(socket: Socket): void {
    const busy = this.#http1Busy.get(socket)! - 1;
    if (busy > 0) {
      this.#http1Busy.set(socket, busy);
      return;
    }
    this.#http1Busy.delete(socket);
    if (this.#draining) socket.end();
  }

  /** Registers an accepted connection (before its protocol is known). */
  addSocket(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      this.#changed?.();
    });
  }

  /** Marks a connection as HTTP/2: it is closed through its session, not ended. */
  markHttp2(socket: Socket): void {
    this.#h2Sockets.add(socket);
  }

  addSession(session: Http2Session): void {
    this.#sessions.add(session);
    session.once("close", () => this.#sessions.delete(session));
  }

  /** Stops new work: GOAWAY to every session, idle HTTP/1.1 connections (and unsniffed ones) ended now. */
  startDraining(): void {
    this.#draining = true;
    for (const session of this.#sessions) session.close();
    for (const socket of this.#sockets) {
      if (!this.#h2Sockets.has(socket) && !this.#http1Busy.has(socket)) socket.end();
    }
  }

  /** Resolves when no request is in flight, or after `ms`; true when none is. */
  async requestsDone(ms: number): Promise<boolean> {
    await this.#waitFor(() => this.#inFlight === 0, ms);
    return this.#inFlight === 0;
  }

  /** Gives connections up to `flushMs` to send their last bytes and close, then destroys the rest. */
  async closeConnections(flushMs: number): Promise<void> {
    await this.#waitFor(() => this.#sockets.size === 0, flushMs);
    for (const session of this.#sessions) session.destroy();
    for (const socket of this.#sockets) socket.destroy();
  }

  #waitFor(done: () => boolean, ms: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#changed = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.#changed = () => {
        if (done()) finish();
      };
    });
  }
}

/**
 * Once the response's trailers are out, ends a stream whose client has not
 * finished sending with RST_STREAM(NO_ERROR). Node's compat response calls
 * sendTrailers() from its own "wantTrailers" listener, registered before this
 * one, and sendTrailers() hands the trailers to nghttp2 in a setImmediate: the
 * reset is queued behind it, so the client gets the status before the reset.
 */
function resetUnreadRequestWhenAnswered(stream: ServerHttp2Stream): void {
  stream.once("wantTrailers", () => {
    setImmediate(() => {
      if (!stream.closed && stream.state.remoteClose !== 1) stream.close(http2Constants.NGHTTP2_NO_ERROR);
    });
  });
}
