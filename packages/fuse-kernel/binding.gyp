{
  "targets": [
    {
      "target_name": "swarm_fuse",
      "sources": ["native/addon.c", "native/server.c", "native/nodes.c", "native/requests.c", "native/splice.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
