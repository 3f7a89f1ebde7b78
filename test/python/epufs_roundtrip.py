"""Round-trips one file through Epufs with a Python gRPC client generated from proto/.

Usage: epufs_roundtrip.py GEN_DIR TARGET TOKEN TENANT TIMELINE ENDPOINT PATH FILE

GEN_DIR holds the code protoc generated from proto/ (pgmesh/epufs/v1/epufs_pb2*.py).
Puts FILE's bytes at PATH (client stream: header, then chunks of 64 KiB),
gets them back (server stream: info, then chunks), checks they are equal, then
gets again with if_none_match set to the version and checks not_modified.
Prints one JSON line with what it saw; exits 1 on any mismatch.
"""

import json
import sys


def main() -> int:
    gen_dir, target, token, tenant, timeline, endpoint_id, path, file_path = sys.argv[1:9]
    sys.path.insert(0, gen_dir)

    import grpc
    from pgmesh.common.v1 import common_pb2
    from pgmesh.epufs.v1 import epufs_pb2, epufs_pb2_grpc

    with open(file_path, "rb") as f:
        data = f.read()
    endpoint = common_pb2.EndpointRef(tenant_id=tenant, timeline_id=timeline, endpoint_id=endpoint_id)
    metadata = [("authorization", f"Bearer {token}")]

    def put_requests():
        yield epufs_pb2.PutFileRequest(
            header=epufs_pb2.PutFileHeader(endpoint=endpoint, path=path, size=len(data))
        )
        for offset in range(0, len(data), 64 * 1024):
            yield epufs_pb2.PutFileRequest(chunk=data[offset : offset + 64 * 1024])

    with grpc.insecure_channel(target) as channel:
        stub = epufs_pb2_grpc.EpufsServiceStub(channel)
        stored = stub.PutFile(put_requests(), metadata=metadata, timeout=60).file

        messages = list(stub.GetFile(epufs_pb2.GetFileRequest(endpoint=endpoint, path=path), metadata=metadata, timeout=60))
        info = messages[0].info
        received = b"".join(message.chunk for message in messages[1:])

        cached = list(
            stub.GetFile(
                epufs_pb2.GetFileRequest(endpoint=endpoint, path=path, if_none_match=stored.version),
                metadata=metadata,
                timeout=60,
            )
        )

        try:
            stub.GetFile(
                epufs_pb2.GetFileRequest(endpoint=endpoint, path="../../etc/passwd"), metadata=metadata, timeout=60
            ).next()
            traversal = "OK"
        except grpc.RpcError as error:
            traversal = error.code().name

    result = {
        "stored_size": stored.size,
        "version": stored.version,
        "info_size": info.size,
        "info_version": info.version,
        "chunks": len(messages) - 1,
        "equal": received == data,
        "not_modified": len(cached) == 1 and cached[0].not_modified,
        "traversal": traversal,
    }
    print(json.dumps(result))
    ok = result["equal"] and result["not_modified"] and stored.size == len(data) and info.version == stored.version
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
