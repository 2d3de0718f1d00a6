"""Generated etcd v3 gRPC stubs (see scripts/gen_protos.sh); trimmed protos live beside them."""
