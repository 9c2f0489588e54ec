#!/usr/bin/env python3
"""Writes container images with no container engine.

    pack.py --out IMG.tar --tag NAME:TAG --layer base.tar --file SRC:DEST:MODE ...
            [--symlink LINK:TARGET ...] [--dir PATH:MODE ...] --entrypoint /usr/local/bin/x
            [--user 65532:65532] [--arch amd64|arm64] [--oci-layout DIR]

writes one image for one architecture as a docker-archive tarball: what `docker save`
writes and what `docker load`, `podman load`, `ctr images import` and
`skopeo copy docker-archive:...` read. Each --layer is an existing tar (the Debian base);
all --file, --symlink and --dir entries make one more layer. With --oci-layout, the same
image's blobs (config, uncompressed layers, manifest) also go into that OCI image layout
directory, and its manifest's descriptor into DIR/platforms/ARCH.json.

    pack.py --index DIR --tag NAME:TAG --out IMG.oci.tar

then makes DIR one multi-architecture image: an OCI image index over the platforms'
manifests, named TAG in DIR/index.json, tarred as an OCI archive, which
`skopeo copy --all oci-archive:IMG.oci.tar docker://REGISTRY/NAME:TAG` pushes as one tag
and `ctr images import --all-platforms` loads.
Entries are owned by root with a fixed mtime, so the same inputs give the same archive.
Used by images/build.sh (`make image`) and the real-node test images.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile

EPOCH = 0
# Debian's architecture names, as OCI platforms.
PLATFORMS = {"amd64": {"architecture": "amd64", "os": "linux"},
             "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"}}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


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
    p.add_argument("--index", metavar="DIR", help="write the OCI layout DIR's index and archive")
    p.add_argument("--arch", default="amd64", choices=sorted(PLATFORMS))
    p.add_argument("--oci-layout", metavar="DIR", help="also write the image's blobs into DIR")
    p.add_argument("--layer", action="append", default=[], help="an existing layer tar")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST:OCTAL_MODE")
    p.add_argument("--symlink", action="append", default=[], help="LINK:TARGET")
    p.add_argument("--dir", action="append", default=[], help="PATH:OCTAL_MODE, an empty directory")
    p.add_argument("--entrypoint")
    p.add_argument("--user", default="")
    args = p.parse_args()
    if args.index:
        write_index(args.index, args.tag, args.out)
        return
    if not args.entrypoint:
        p.error("--entrypoint is required")

    layers = list(args.layer)
    tmp_layer = None
    if args.file or args.symlink or args.dir:
        entries = []
        for spec in args.file:
            src, dest, mode = spec.rsplit(":", 2)
            entries.append((src, dest, int(mode, 8)))
        symlinks = [tuple(spec.split(":", 1)) for spec in args.symlink]
        extra_dirs = [(d, int(m, 8)) for d, m in (spec.rsplit(":", 1) for spec in args.dir)]
        tmp_layer = f"{args.out}.files{os.getpid()}.tar"
        files_layer(entries, symlinks, extra_dirs, tmp_layer)
        layers.append(tmp_layer)

    diff_ids = [sha256_file(layer) for layer in layers]
    config = {
        **PLATFORMS[args.arch],
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

    tmp_out = f"{args.out}.tmp{os.getpid()}"
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
    if args.oci_layout:
        oci_image(args.oci_layout, args.arch, layers, diff_ids, config_bytes)
    if tmp_layer:
        os.remove(tmp_layer)
    print(f"{args.out}: {args.tag} ({args.arch}), {len(layers)} layers, config sha256:{config_name[:-5]}")


def put_blob(layout, data):
    """Writes bytes as a blob of the OCI layout; returns its descriptor's digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def oci_image(layout, arch, layers, diff_ids, config_bytes):
    """One architecture's image in the OCI layout: its layers (uncompressed, so a layer's
    digest is its diff ID), config and manifest; the manifest's descriptor, with its
    platform, goes to platforms/ARCH.json for write_index."""
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layer_descs = []
    for layer, digest in zip(layers, diff_ids):
        dest = os.path.join(blobs, digest)
        if not os.path.exists(dest):
            shutil.copyfile(layer, dest + ".tmp")
            os.replace(dest + ".tmp", dest)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": "sha256:" + digest, "size": os.path.getsize(layer)})
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **put_blob(layout, config_bytes)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layer_descs}
    desc = {"mediaType": OCI_MANIFEST, **put_blob(layout, canonical(manifest)), "platform": PLATFORMS[arch]}
    os.makedirs(os.path.join(layout, "platforms"), exist_ok=True)
    with open(os.path.join(layout, "platforms", arch + ".json"), "w") as f:
        json.dump(desc, f)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def full_name(tag):
    """NAME:TAG as a pull names it: a name with no registry is Docker Hub's
    (`palisade-agent:0.1.0` is `docker.io/library/palisade-agent:0.1.0`). containerd keeps
    an OCI archive's name as written, while the kubelet asks for the normalized one."""
    first, _, rest = tag.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return tag
    return "docker.io/" + (tag if rest else "library/" + tag)


def write_index(layout, tag, out):
    """The layout's platforms under one image index named TAG, tarred to OUT."""
    platforms = os.path.join(layout, "platforms")
    descs = []
    for name in sorted(os.listdir(platforms)):
        with open(os.path.join(platforms, name)) as f:
            descs.append(json.load(f))
    if not descs:
        raise SystemExit(f"{layout}: no image was written into it (pack.py --oci-layout)")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}
    top = {"mediaType": OCI_INDEX, **put_blob(layout, canonical(index)),
           "annotations": {"org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1],
                           "io.containerd.image.name": full_name(tag)}}
    entries = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}),
               "index.json": canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})}
    tmp_out = f"{out}.tmp{os.getpid()}"
    with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            add_bytes(tar, name, data)
        blobs = os.path.join(layout, "blobs", "sha256")
        for digest in sorted(os.listdir(blobs)):
            if digest.endswith(".tmp"):
                continue
            info = tar.gettarinfo(os.path.join(blobs, digest), arcname="blobs/sha256/" + digest)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            with open(os.path.join(blobs, digest), "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp_out, out)
    arches = ", ".join(d["platform"]["architecture"] for d in descs)
    print(f"{out}: {tag}, an OCI image index of {len(descs)} platforms ({arches}), {top['digest']}")


if __name__ == "__main__":
    main()
