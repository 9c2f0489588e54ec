#!/usr/bin/env python3
"""Writes a container image as a docker-archive tarball, with no container engine.

The archive is what `docker save` writes and what `docker load`, `podman load`,
`ctr images import` and `skopeo copy docker-archive:...` read. Layers are plain tar files;
the image config records their digests. Used by images/build.sh (`make image`).

    pack.py --out IMG.tar --tag NAME:TAG --layer base.tar --file SRC:DEST:MODE ...
            [--symlink LINK:TARGET ...] [--dir PATH:MODE ...] --entrypoint /usr/local/bin/x
            [--user 65532:65532]

Each --layer is an existing tar (the Debian base); all --file, --symlink and --dir entries
make one more layer.
Entries are owned by root with a fixed mtime, so the same inputs give the same archive.
"""

import argparse
import hashlib
import io
import json
import os
import tarfile

EPOCH = 0


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_layer(entries, symlinks, extra_dirs, path):
    """A tar holding each SRC at DEST and each symlink (parent directories included),
    root-owned."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()

        def parents(dest):
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                    tar.addfile(info)

        for src, dest, mode in entries:
            parents(dest)
            info = tarfile.TarInfo(dest.strip("/"))
            info.size, info.mode, info.mtime = os.path.getsize(src), mode, EPOCH
            with open(src, "rb") as f:
                tar.addfile(info, f)
        for d, mode in extra_dirs:
            parents(d)
            info = tarfile.TarInfo(d.strip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, EPOCH
            tar.addfile(info)
        for link, target in symlinks:
            parents(link)
            info = tarfile.TarInfo(link.strip("/"))
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, EPOCH
            tar.addfile(info)


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
    tar.addfile(info, io.BytesIO(data))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--tag", required=True, help="NAME:TAG recorded in the archive")
    p.add_argument("--layer", action="append", default=[], help="an existing layer tar")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST:OCTAL_MODE")
    p.add_argument("--symlink", action="append", default=[], help="LINK:TARGET")
    p.add_argument("--dir", action="append", default=[], help="PATH:OCTAL_MODE, an empty directory")
    p.add_argument("--entrypoint", required=True)
    p.add_argument("--user", default="")
    args = p.parse_args()

    layers = list(args.layer)
    tmp_layer = None
    if args.file or args.symlink or args.dir:
        entries = []
        for spec in args.file:
            src, dest, mode = spec.rsplit(":", 2)
            entries.append((src, dest, int(mode, 8)))
        symlinks = [tuple(spec.split(":", 1)) for spec in args.symlink]
        extra_dirs = [(d, int(m, 8)) for d, m in (spec.rsplit(":", 1) for spec in args.dir)]
        tmp_layer = args.out + ".files.tar"
        files_layer(entries, symlinks, extra_dirs, tmp_layer)
        layers.append(tmp_layer)

    diff_ids = [sha256_file(layer) for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": [args.entrypoint],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "User": args.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "images/pack.py"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [args.tag],
            "Layers": [d + "/layer.tar" for d in diff_ids],
        }
    ]

    tmp_out = args.out + ".tmp"
    with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
        for layer, digest in zip(layers, diff_ids):
            info = tar.gettarinfo(layer, arcname=digest + "/layer.tar")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            with open(layer, "rb") as f:
                tar.addfile(info, f)
        add_bytes(tar, config_name, config_bytes)
        add_bytes(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    os.replace(tmp_out, args.out)
    if tmp_layer:
        os.remove(tmp_layer)
    print(f"{args.out}: {args.tag}, {len(layers)} layers, config sha256:{config_name[:-5]}")


if __name__ == "__main__":
    main()
