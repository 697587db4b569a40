//! Finding a model's files and reading a model split into parts as one
//! stream.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ConvertError;

/// The files of a CTranslate2 Whisper model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// `model.bin`, or `model.bin.part1`, `model.bin.part2`, ... in order:
    /// their concatenation is the model.
    pub model_parts: Vec<PathBuf>,
    /// `vocabulary.json` or `vocabulary.txt`.
    pub vocabulary: PathBuf,
    /// `config.json`, if there is one (not needed for the conversion).
    pub config: Option<PathBuf>,
}

impl ModelFiles {
    /// Finds the model files in one directory.
    pub fn discover(dir: &Path) -> Result<Self, ConvertError> {
        Self::discover_in(&[dir])
    }

    /// Finds the model files in several directories, for models shipped
    /// in pieces (e.g. `model.bin.part1` and the vocabulary in one
    /// directory, `model.bin.part2` in another). A file name may occur in
    /// only one of them.
    pub fn discover_in<P: AsRef<Path>>(dirs: &[P]) -> Result<Self, ConvertError> {
        let mut whole: Option<PathBuf> = None;
        let mut parts: Vec<(u32, PathBuf)> = Vec::new();
        let mut vocab_json: Option<PathBuf> = None;
        let mut vocab_txt: Option<PathBuf> = None;
        let mut config: Option<PathBuf> = None;

        fn set_once(slot: &mut Option<PathBuf>, path: PathBuf) -> Result<(), ConvertError> {
            match slot {
                Some(first) => Err(ConvertError::AmbiguousInput {
                    first: first.clone(),
                    second: path,
                }),
                None => {
                    *slot = Some(path);
                    Ok(())
                }
            }
        }

        for dir in dirs {
            let dir = dir.as_ref();
            if !dir.is_dir() {
                return Err(ConvertError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
            let entries = std::fs::read_dir(dir).map_err(|source| ConvertError::Io {
                action: "listing",
                path: dir.to_path_buf(),
                source,
            })?;
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConvertError::Io {
                    action: "listing",
                    path: dir.to_path_buf(),
                    source,
                })?;
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                let path = dir.join(&name);
                if !path.is_file() {
                    continue;
                }
                match name.as_str() {
                    "model.bin" => set_once(&mut whole, path)?,
                    "vocabulary.json" => set_once(&mut vocab_json, path)?,
                    "vocabulary.txt" => set_once(&mut vocab_txt, path)?,
                    "config.json" => set_once(&mut config, path)?,
                    _ => {
                        let number = name
                            .strip_prefix("model.bin.part")
                            .and_then(|n| n.parse::<u32>().ok())
                            .filter(|&n| n > 0);
                        if let Some(n) = number {
                            if let Some((_, first)) = parts.iter().find(|(m, _)| *m == n) {
                                return Err(ConvertError::AmbiguousInput {
                                    first: first.clone(),
                                    second: path,
                                });
                            }
                            parts.push((n, path));
                        }
                    }
                }
            }
        }

        let searched = || {
            dirs.iter()
                .map(|d| d.as_ref().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        parts.sort();
        let model_parts = match (whole, parts.first()) {
            (Some(whole), Some((_, part))) => {
                return Err(ConvertError::AmbiguousInput {
                    first: whole,
                    second: part.clone(),
                });
            }
            (Some(whole), None) => vec![whole],
            (None, None) => {
                return Err(ConvertError::ModelNotFound {
                    searched: searched(),
                });
            }
            (None, Some(_)) => {
                for (expected, (n, path)) in (1u32..).zip(&parts) {
                    if *n != expected {
                        return Err(ConvertError::MissingPart {
                            missing: expected,
                            found: path.clone(),
                        });
                    }
                }
                parts.into_iter().map(|(_, p)| p).collect()
            }
        };
        // CTranslate2 itself prefers vocabulary.json over vocabulary.txt.
        let vocabulary =
            vocab_json
                .or(vocab_txt)
                .ok_or_else(|| ConvertError::VocabularyNotFound {
                    searched: searched(),
                })?;
        Ok(Self {
            model_parts,
            vocabulary,
            config,
        })
    }

    /// A short description of the model file(s) for messages.
    pub fn describe_model(&self) -> String {
        self.model_parts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

struct Part {
    path: PathBuf,
    file: File,
    start: u64,
    len: u64,
}

/// Reads several files as if they were concatenated, without copying them.
pub struct ConcatReader {
    parts: Vec<Part>,
    len: u64,
    pos: u64,
}

impl ConcatReader {
    /// Opens the files; their lengths are taken now.
    pub fn open(paths: &[PathBuf]) -> Result<Self, ConvertError> {
        let mut parts = Vec::with_capacity(paths.len());
        let mut start = 0u64;
        for path in paths {
            let io_err = |source| ConvertError::Io {
                action: "opening",
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(io_err)?;
            let len = file.metadata().map_err(io_err)?.len();
            parts.push(Part {
                path: path.clone(),
                file,
                start,
                len,
            });
            start += len;
        }
        Ok(Self {
            parts,
            len: start,
            pos: 0,
        })
    }

    /// Total length of all parts.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for ConcatReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        // The first part that ends after `pos`; it exists since pos < len.
        let index = self.parts.partition_point(|p| p.start + p.len <= self.pos);
        let Some(part) = self.parts.get_mut(index) else {
            return Ok(0);
        };
        let within = self.pos - part.start;
        part.file.seek(SeekFrom::Start(within))?;
        let room = usize::try_from(part.len - within).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = part.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} became shorter while being read (expected {} bytes)",
                    part.path.display(),
                    part.len
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ConcatReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn discovers_whole_and_split_models() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let whole = touch(a.path(), "model.bin", b"x");
        let vocab = touch(a.path(), "vocabulary.txt", b"x");
        let files = ModelFiles::discover(a.path()).unwrap();
        assert_eq!(files.model_parts, std::slice::from_ref(&whole));
        assert_eq!(files.vocabulary, vocab);
        assert_eq!(files.config, None);

        std::fs::remove_file(&whole).unwrap();
        let p1 = touch(a.path(), "model.bin.part1", b"x");
        let p2 = touch(b.path(), "model.bin.part2", b"x");
        let p10 = touch(b.path(), "model.bin.part10", b"x");
        for n in 3..10 {
            touch(a.path(), &format!("model.bin.part{n}"), b"x");
        }
        let files = ModelFiles::discover_in(&[a.path(), b.path()]).unwrap();
        assert_eq!(files.model_parts.len(), 10);
        assert_eq!(files.model_parts[0], p1);
        assert_eq!(files.model_parts[1], p2);
        assert_eq!(files.model_parts[9], p10);
    }

    #[test]
    fn reports_gaps_ambiguity_and_absence() {
        let a = tempfile::tempdir().unwrap();
        touch(a.path(), "vocabulary.txt", b"x");
        let err = ModelFiles::discover(a.path()).unwrap_err();
        assert!(matches!(err, ConvertError::ModelNotFound { .. }), "{err}");

        touch(a.path(), "model.bin.part1", b"x");
        touch(a.path(), "model.bin.part3", b"x");
        let err = ModelFiles::discover(a.path()).unwrap_err();
        assert!(
            err.to_string().contains("model.bin.part2 is missing"),
            "{err}"
        );

        touch(a.path(), "model.bin.part2", b"x");
        touch(a.path(), "model.bin", b"x");
        let err = ModelFiles::discover(a.path()).unwrap_err();
        assert!(matches!(err, ConvertError::AmbiguousInput { .. }), "{err}");

        let b = tempfile::tempdir().unwrap();
        touch(b.path(), "model.bin", b"x");
        let err = ModelFiles::discover(b.path()).unwrap_err();
        assert!(
            matches!(err, ConvertError::VocabularyNotFound { .. }),
            "{err}"
        );

        let err = ModelFiles::discover(&b.path().join("nope")).unwrap_err();
        assert!(matches!(err, ConvertError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn concatenated_reads_and_seeks_cross_part_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![
            touch(dir.path(), "a", b"hello "),
            touch(dir.path(), "b", b""),
            touch(dir.path(), "c", b"wor"),
            touch(dir.path(), "d", b"ld"),
        ];
        let mut r = ConcatReader::open(&paths).unwrap();
        assert_eq!(r.len(), 11);
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert_eq!(all, "hello world");

        r.seek(SeekFrom::Start(4)).unwrap();
        let mut buf = [0u8; 6];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"o worl");
        r.seek(SeekFrom::End(-2)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"ld");
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
        let mut buf = [0u8; 3];
        r.seek(SeekFrom::Start(10)).unwrap();
        assert!(r.read_exact(&mut buf).is_err());
    }
}
