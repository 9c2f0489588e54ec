//! The images `make image` writes (images/build.sh), inspected with skopeo and run where
//! they will run: one OCI image index per component over linux/amd64 and linux/arm64, which
//! skopeo copies whole, and per-architecture docker-archive tarballs. The arm64 binaries are
//! run inside the arm64 image's own root file system (chroot, the CPU emulated by
//! qemu-user through binfmt_misc), so they resolve every library from the image, the way a
//! pod on an arm64 node starts them.
//!
//! Needs root (chroot, mmdebstrap) and builds the images when they are missing; part of
//! `make realnode-test` (feature `realnode`).

use anyhow::{Context, Result, bail, ensure};
use palisade_e2e::controlplane::repo_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const COMPONENTS: [&str; 2] = ["operator", "agent"];

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// target/images, built once for this test binary (cached builds make it quick).
fn images() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root();
        run(Command::new(root.join("e2e/scripts/system-deps.sh")).arg("--test")).expect("system packages");
        let status = Command::new(root.join("images/build.sh"))
            .status()
            .expect("images/build.sh");
        assert!(status.success(), "images/build.sh failed");
        root.join("target/images")
    })
}

fn skopeo_json(args: &[&str]) -> Result<Value> {
    Ok(serde_json::from_str(&run(Command::new("skopeo").args(args))?)?)
}

/// The root file system of a docker-archive image, its layers applied in order.
fn unpack(archive: &Path, dir: &Path) -> Result<PathBuf> {
    let raw = dir.join("archive");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&raw)?;
    std::fs::create_dir_all(&rootfs)?;
    run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&raw))?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(raw.join("manifest.json"))?)?;
    let layers = manifest[0]["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?;
    for layer in layers {
        let layer = layer.as_str().context("a layer is not a path")?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(raw.join(layer))
            .arg("-C")
            .arg(&rootfs))?;
    }
    Ok(rootfs)
}

/// The ELF machine field of a binary: 183 is AArch64, 62 is x86-64.
fn elf_machine(path: &Path) -> Result<u16> {
    let bytes = std::fs::read(path)?;
    ensure!(
        bytes.len() > 20 && bytes[..4] == *b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    Ok(u16::from_le_bytes([bytes[18], bytes[19]]))
}

#[test]
fn each_component_is_one_index_over_both_architectures_that_skopeo_copies_whole() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for component in COMPONENTS {
        let archive = images().join(format!("palisade-{component}.oci.tar"));
        let source = format!("oci-archive:{}", archive.display());
        let index = skopeo_json(&["inspect", "--raw", &source])?;
        assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{index}");
        let mut platforms: Vec<String> = index["manifests"]
            .as_array()
            .context("no manifests")?
            .iter()
            .map(|m| {
                let p = &m["platform"];
                format!(
                    "{}/{}{}",
                    p["os"].as_str().unwrap_or(""),
                    p["architecture"].as_str().unwrap_or(""),
                    p["variant"].as_str().map(|v| format!("/{v}")).unwrap_or_default()
                )
            })
            .collect();
        platforms.sort();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"], "{component}");

        // Each platform's config says what it is and how it starts.
        for arch in ["amd64", "arm64"] {
            let config = skopeo_json(&["--override-arch", arch, "inspect", "--config", &source])?;
            assert_eq!(config["architecture"], arch, "{component} {arch}");
            assert_eq!(config["os"], "linux");
            let entrypoint = format!("/usr/local/bin/palisade-{component}");
            assert_eq!(
                config["config"]["Entrypoint"],
                serde_json::json!([entrypoint]),
                "{component}"
            );
        }

        // skopeo copies the whole index, verifying every blob's digest on the way: what
        // `skopeo copy --all ... docker://REGISTRY/...` pushes. The copy holds both
        // platforms, each with the same config (the same image).
        let copy = format!("oci:{}:copied", dir.path().join(component).display());
        run(Command::new("skopeo").args(["copy", "--all", "--quiet", &source, &copy]))?;
        let copied = skopeo_json(&["inspect", "--raw", &copy])?;
        let platforms_of = |index: &Value| {
            index["manifests"]
                .as_array()
                .map(|m| m.iter().map(|d| d["platform"].clone()).collect::<Vec<_>>())
        };
        assert_eq!(platforms_of(&copied), platforms_of(&index), "{copied}");
        for arch in ["amd64", "arm64"] {
            let original = skopeo_json(&["--override-arch", arch, "inspect", "--config", &source])?;
            let copied = skopeo_json(&["--override-arch", arch, "inspect", "--config", &copy])?;
            assert_eq!(copied, original, "{component} {arch}");
        }
    }
    Ok(())
}

#[test]
fn the_arm64_images_run_their_aarch64_binaries_against_their_own_libseccomp() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("this test needs root (it unpacks an image and chroots into it)");
    }
    for component in COMPONENTS {
        let dir = tempfile::tempdir()?;
        let archive = images().join(format!("palisade-{component}-arm64.tar"));
        let config = skopeo_json(&["inspect", "--config", &format!("docker-archive:{}", archive.display())])?;
        assert_eq!(config["architecture"], "arm64", "{component}");
        // The tarball is the index's arm64 image: the same config, so the same layers
        // (their digests are in it), which is what an arm64 node pulls.
        let index = format!(
            "oci-archive:{}",
            images().join(format!("palisade-{component}.oci.tar")).display()
        );
        let in_index = skopeo_json(&["--override-arch", "arm64", "inspect", "--config", &index])?;
        assert_eq!(
            in_index, config,
            "{component}: the index's arm64 image is not the tarball's"
        );

        let rootfs = unpack(&archive, dir.path())?;
        let binary = format!("/usr/local/bin/palisade-{component}");
        assert_eq!(
            elf_machine(&rootfs.join(&binary[1..]))?,
            183,
            "{binary} is an AArch64 ELF"
        );

        // The image's own dynamic loader names where each library comes from.
        let libs = run(Command::new("chroot")
            .arg(&rootfs)
            .args(["/lib/ld-linux-aarch64.so.1", "--list", &binary]))?;
        let seccomp = libs
            .lines()
            .find(|l| l.contains("libseccomp.so"))
            .with_context(|| format!("{binary} is not linked against libseccomp:\n{libs}"))?;
        assert!(
            seccomp.contains("=> /lib/aarch64-linux-gnu/libseccomp.so.2")
                || seccomp.contains("=> /usr/lib/aarch64-linux-gnu/libseccomp.so.2"),
            "{seccomp}"
        );
        let lib = rootfs.join("usr/lib/aarch64-linux-gnu/libseccomp.so.2");
        assert_eq!(elf_machine(&lib)?, 183, "the image's libseccomp is arm64's");

        // It starts: every symbol resolved (Rust links with -z now) against the image's libraries.
        let version = run(Command::new("chroot").arg(&rootfs).args([binary.as_str(), "--version"]))?;
        assert!(version.starts_with(&format!("palisade-{component} ")), "{version}");
        if component == "agent" {
            let parser = run(Command::new("chroot")
                .arg(&rootfs)
                .args(["/sbin/apparmor_parser", "--version"]))?;
            assert!(parser.contains("AppArmor parser version 4."), "{parser}");
            assert_eq!(elf_machine(&rootfs.join("sbin/apparmor_parser"))?, 183);
        }
    }
    Ok(())
}
