//! What `apparmor_parser` compiled: the binary policy it writes to the kernel (`-S`), read
//! the way the kernel reads it, and the judgement of whether a profile's compiled policy
//! affects only itself.
//!
//! Every security decision about a raw policy (which profiles it defines, whether one
//! attaches to programs, which mode each loads in, which namespace it goes to) is taken
//! here, from the parser's output, never from the policy text: any difference between a
//! text scanner's grammar and the parser's would otherwise be a way in. The source-level
//! checks in [`crate::render::apparmor`] stay only to give friendly first errors.
//!
//! The stream is the kernel's "packed" policy format: a sequence of typed elements, each
//! optionally preceded by a name (see the kernel's `policy_unpack.c`). One blob per profile,
//! children included, each opening with `version`, optionally `namespace`, then the
//! `profile` struct whose first element is the profile's full name. Inside it, whatever
//! comes between the name and the `flags` struct is the attachment (`attach`, the `xmatch`
//! DFA and its length); `flags` holds the hat bit, the mode and the audit bit.

use crate::AppArmorMode;

/// One profile of a compiled policy, as the kernel would see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledProfile {
    /// The full kernel name (`name` or `name//child`).
    pub name: String,
    /// The policy namespace the profile would load into, when the policy names one.
    pub namespace: Option<String>,
    /// The profile replaces another one by name (`rename`).
    pub rename: Option<String>,
    /// The profile has an attachment: the kernel would apply it to programs it runs.
    pub attached: bool,
    /// The mode the kernel gives it: `enforce`, `complain`, `kill`, `unconfined`, `user`.
    pub mode: &'static str,
}

/// Largest nesting of structs and lists read before the stream is refused.
const MAX_DEPTH: usize = 32;
/// The kernel's force-complain bit in the version word (`apparmor_parser --Complain`).
const FORCE_COMPLAIN: u32 = 0x800;

/// Why a compiled policy could not be read. Refused: what cannot be read is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the compiled policy cannot be read at byte {at}: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

#[derive(Debug, PartialEq)]
enum Value<'a> {
    U8,
    U16,
    U32(u32),
    U64,
    Str(&'a [u8]),
    Blob,
    Struct,
    StructEnd,
    List,
    ListEnd,
    Array,
    ArrayEnd,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.err("an element runs past the end"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// One element: its name (if any) and its value.
    fn next(&mut self) -> Result<(Option<&'a [u8]>, Value<'a>), DecodeError> {
        let mut code = self.take(1)?[0];
        let mut name = None;
        if code == 4 {
            let len = self.u16()? as usize;
            name = Some(strip_nul(self.take(len)?));
            code = self.take(1)?[0];
        }
        let value = match code {
            0 => {
                self.take(1)?;
                Value::U8
            }
            1 => {
                self.take(2)?;
                Value::U16
            }
            2 => Value::U32(self.u32()?),
            3 => {
                self.take(8)?;
                Value::U64
            }
            5 => {
                let len = self.u16()? as usize;
                Value::Str(strip_nul(self.take(len)?))
            }
            6 => {
                let len = self.u32()? as usize;
                self.take(len)?;
                Value::Blob
            }
            7 => Value::Struct,
            8 => Value::StructEnd,
            9 => Value::List,
            10 => Value::ListEnd,
            11 => {
                self.u16()?;
                Value::Array
            }
            12 => Value::ArrayEnd,
            _ => return Err(self.err("unknown element type")),
        };
        Ok((name, value))
    }
}

fn strip_nul(b: &[u8]) -> &[u8] {
    b.strip_suffix(&[0]).unwrap_or(b)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads every profile a compiled policy stream defines.
pub fn decode(bytes: &[u8]) -> Result<Vec<CompiledProfile>, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut out = Vec::new();
    let mut version = None;
    let mut namespace = None;
    while r.pos < bytes.len() {
        match r.next()? {
            (Some(b"version"), Value::U32(v)) => {
                version = Some(v);
                namespace = None;
            }
            (Some(b"namespace"), Value::Str(ns)) => namespace = Some(text(ns)),
            (Some(b"profile"), Value::Struct) => {
                let v = version.ok_or_else(|| r.err("a profile before any version"))?;
                profile(&mut r, v, namespace.clone(), 1, &mut out)?;
            }
            _ => return Err(r.err("an element outside a profile")),
        }
    }
    Ok(out)
}

/// Reads one `profile` struct (its opening already read), and any profile nested in it.
fn profile(
    r: &mut Reader<'_>,
    version: u32,
    namespace: Option<String>,
    depth: usize,
    out: &mut Vec<CompiledProfile>,
) -> Result<(), DecodeError> {
    let name = match r.next()? {
        (None, Value::Str(name)) => text(name),
        _ => return Err(r.err("a profile without a name")),
    };
    let mut p = CompiledProfile {
        name,
        namespace: namespace.clone(),
        rename: None,
        attached: false,
        mode: "enforce",
    };
    let mut before_flags = true;
    let mut level = 0usize;
    let index = out.len();
    out.push(p.clone());
    loop {
        let (elem_name, value) = r.next()?;
        match (&value, level) {
            (Value::StructEnd | Value::ListEnd | Value::ArrayEnd, 0) => break,
            (Value::StructEnd | Value::ListEnd | Value::ArrayEnd, _) => level -= 1,
            (Value::Struct, _) if elem_name == Some(b"profile") => {
                if depth + level >= MAX_DEPTH {
                    return Err(r.err("profiles nested too deeply"));
                }
                profile(r, version, namespace.clone(), depth + level + 1, out)?;
            }
            (Value::Struct, 0) if elem_name == Some(b"flags") => {
                before_flags = false;
                let _hat = flag_word(r)?;
                let mode = flag_word(r)?;
                p.mode = if version & FORCE_COMPLAIN != 0 {
                    "complain"
                } else {
                    match mode {
                        0 => "enforce",
                        1 => "complain",
                        2 => "kill",
                        3 => "unconfined",
                        _ => "user",
                    }
                };
                level += 1;
            }
            (Value::Struct | Value::List | Value::Array, _) => {
                if depth + level >= MAX_DEPTH {
                    return Err(r.err("elements nested too deeply"));
                }
                if level == 0 && before_flags && elem_name != Some(b"disconnected") {
                    p.attached = true;
                }
                level += 1;
            }
            (Value::Str(s), 0) if elem_name == Some(b"rename") => p.rename = Some(text(s)),
            // A disconnected-path prefix and a kill signal sit between the name and the
            // flags too; neither attaches the profile to anything.
            (_, 0) if before_flags && matches!(elem_name, Some(b"disconnected" | b"kill")) => {}
            (_, 0) if before_flags => p.attached = true,
            _ => {}
        }
    }
    if version & FORCE_COMPLAIN != 0 {
        p.mode = "complain";
    }
    out[index] = p;
    Ok(())
}

fn flag_word(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    match r.next()? {
        (None, Value::U32(v)) => Ok(v),
        _ => Err(r.err("a flags struct without its words")),
    }
}

/// Why a compiled policy is refused: each names what the parser produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Unreadable(#[from] DecodeError),
    #[error("the parser produced no profile {0:?}")]
    Missing(String),
    #[error("the policy defines the profile {found:?}, which is not {name:?} or one of its children")]
    Foreign { name: String, found: String },
    #[error("the profile name {0:?} has a control character: the kernel prints names raw in its profiles list")]
    ControlCharacter(String),
    #[error("the profile {0:?} would load into the policy namespace {1:?}; profiles load only into the root namespace")]
    Namespace(String, String),
    #[error("the profile {0:?} would replace the profile {1:?} (rename)")]
    Rename(String, String),
    #[error(
        "the profile {0:?} has an attachment: the kernel would confine every program it matches on the node, not only pods that ask for it"
    )]
    Attached(String),
    #[error("the profile {name:?} would load in {found} mode, not {want} (spec.mode)")]
    Mode {
        name: String,
        found: &'static str,
        want: &'static str,
    },
}

/// Judges what the parser compiled for the AppArmorProfile `name` in `mode`: it defines the
/// profile `name` and otherwise only its children (`name//...`), all in the root namespace,
/// replacing nothing by rename, every one in `mode`, and the top-level profile attaches to no
/// program (children may: they are reachable only from their parent). Returns the profiles.
pub fn judge(bytes: &[u8], name: &str, mode: AppArmorMode) -> Result<Vec<CompiledProfile>, Refusal> {
    let profiles = decode(bytes)?;
    let child_prefix = format!("{name}//");
    let want = mode.kernel_word();
    for p in &profiles {
        if p.name.chars().any(char::is_control) {
            return Err(Refusal::ControlCharacter(p.name.clone()));
        }
        if p.name != name && !p.name.starts_with(&child_prefix) {
            return Err(Refusal::Foreign {
                name: name.to_string(),
                found: p.name.clone(),
            });
        }
        if let Some(ns) = &p.namespace {
            return Err(Refusal::Namespace(p.name.clone(), ns.clone()));
        }
        if let Some(to) = &p.rename {
            return Err(Refusal::Rename(p.name.clone(), to.clone()));
        }
        if p.name == name && p.attached {
            return Err(Refusal::Attached(p.name.clone()));
        }
        if p.mode != want {
            return Err(Refusal::Mode {
                name: p.name.clone(),
                found: p.mode,
                want,
            });
        }
    }
    if !profiles.iter().any(|p| p.name == name) {
        return Err(Refusal::Missing(name.to_string()));
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a stream the way the parser packs it.
    #[derive(Default)]
    struct Packer(Vec<u8>);

    impl Packer {
        /// A NUL-terminated string with its length, after the code `code`.
        fn terminated(&mut self, code: u8, s: &str) -> &mut Self {
            self.0.push(code);
            self.0.extend(((s.len() + 1) as u16).to_le_bytes());
            self.0.extend(s.as_bytes());
            self.0.push(0);
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.push(2);
            self.0.extend(v.to_le_bytes());
            self
        }
        fn name(&mut self, n: &str) -> &mut Self {
            self.terminated(4, n)
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.terminated(5, s)
        }
        fn blob(&mut self, len: u32) -> &mut Self {
            self.0.push(6);
            self.0.extend(len.to_le_bytes());
            self.0.extend(std::iter::repeat_n(0u8, len as usize));
            self
        }
        fn open(&mut self) -> &mut Self {
            self.0.push(7);
            self
        }
        fn close(&mut self) -> &mut Self {
            self.0.push(8);
            self
        }
        fn profile(&mut self, version: u32, name: &str, mode: u32, attach: bool) -> &mut Self {
            self.name("version").u32(version).name("profile").open().str(name);
            if attach {
                self.name("aadfa").blob(16).u32(3);
            }
            self.name("flags").open().u32(0).u32(mode).u32(0).close();
            self.name("aadfa").blob(8).close()
        }
    }

    #[test]
    fn reads_names_modes_and_attachments() {
        let mut p = Packer::default();
        p.profile(5, "web", 0, false).profile(5, "web//c", 1, true);
        let got = decode(&p.0).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].name.as_str(), got[0].mode, got[0].attached),
            ("web", "enforce", false)
        );
        assert_eq!(
            (got[1].name.as_str(), got[1].mode, got[1].attached),
            ("web//c", "complain", true)
        );
        assert_eq!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Mode {
                name: "web//c".into(),
                found: "complain",
                want: "enforce"
            })
        );
    }

    #[test]
    fn force_complain_makes_every_profile_complain() {
        let mut p = Packer::default();
        p.profile(5 | FORCE_COMPLAIN, "web", 0, false)
            .profile(5 | FORCE_COMPLAIN, "web//c", 3, false);
        let got = judge(&p.0, "web", AppArmorMode::Complain).unwrap();
        assert!(got.iter().all(|p| p.mode == "complain"));
    }

    #[test]
    fn refuses_attachments_foreign_names_namespaces_and_renames() {
        let mut p = Packer::default();
        p.profile(5, "web", 0, true);
        assert_eq!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Attached("web".into()))
        );
        let mut p = Packer::default();
        p.profile(5, "web", 0, false).profile(5, "webx", 0, false);
        assert!(matches!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Foreign { .. })
        ));
        let mut p = Packer::default();
        p.name("version").u32(5).name("namespace").str("other");
        p.name("profile")
            .open()
            .str("web")
            .name("flags")
            .open()
            .u32(0)
            .u32(0)
            .u32(0)
            .close()
            .close();
        assert!(matches!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Namespace(..))
        ));
        let mut p = Packer::default();
        p.name("version")
            .u32(5)
            .name("profile")
            .open()
            .str("web")
            .name("rename")
            .str("docker-default");
        p.name("flags").open().u32(0).u32(0).u32(0).close().close();
        assert!(matches!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Rename(..))
        ));
        let mut p = Packer::default();
        p.profile(5, "web//c", 0, false);
        assert_eq!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::Missing("web".into()))
        );
    }

    /// The kernel prints profile names raw in its `profiles` list, which runtimes (and the
    /// agent) read line by line: a newline in a child's name would forge a line there.
    #[test]
    fn names_with_control_characters_are_refused() {
        let mut p = Packer::default();
        p.profile(5, "web", 0, false)
            .profile(5, "web//x (enforce)\ncri-containerd.apparmor.d", 0, false);
        assert!(matches!(
            judge(&p.0, "web", AppArmorMode::Enforce),
            Err(Refusal::ControlCharacter(_))
        ));
    }

    #[test]
    fn truncated_or_unknown_streams_are_refused_not_guessed() {
        let mut p = Packer::default();
        p.profile(5, "web", 0, false);
        for cut in 1..p.0.len() {
            assert!(
                judge(&p.0[..cut], "web", AppArmorMode::Enforce).is_err(),
                "a stream cut at {cut} is refused"
            );
        }
        assert!(decode(&[0x42]).is_err());
        let deep: Vec<u8> = [4u8, 8, 0]
            .into_iter()
            .chain(*b"version\0")
            .chain([2, 5, 0, 0, 0, 4, 8, 0])
            .chain(*b"profile\0")
            .chain([7, 5, 2, 0, b'p', 0])
            .chain(std::iter::repeat_n(7u8, 100))
            .collect();
        assert!(decode(&deep).is_err(), "deep nesting is refused");
    }
}
