//! What a build writes beside the ISO: `manifest.json` (recipe and lock
//! hashes, every input with its hash, the builder, SOURCE_DATE_EPOCH, the
//! output's hash), a CycloneDX 1.5 SBOM (the `cyclonedx-bom` crate) and
//! `SHA256SUMS` in the format `sha256sum -c` reads. All three are
//! deterministic: no wall-clock time, no random serial numbers.

use std::collections::BTreeMap;

use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::prelude::{DateTime, Purl};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lock::Lock;

pub const SCHEMA: &str = "bulkhead.manifest/1";

/// A file the build produced or consumed, by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// One locked package and the trees that install it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub package: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
    pub trees: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub release: String,
    pub version: String,
    pub builder: String,
    pub source_date_epoch: u64,
    pub recipe_sha256: String,
    pub lock_sha256: String,
    pub inputs: Vec<Input>,
    /// Intermediate images (compressed trees, initramfs, our binaries).
    pub images: Vec<Artifact>,
    pub output: Artifact,
    /// Pins this build refreshed because nothing served them any more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refreshed: Vec<crate::lock::Change>,
    /// `rustc -vV` of the compiler that built our programs on the medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<String>,
}

/// Locked packages merged across trees, sorted.
pub fn inputs(lock: &Lock) -> Vec<Input> {
    let mut map: BTreeMap<(String, String, String), Input> = BTreeMap::new();
    for (tree, pins) in &lock.trees {
        for p in pins {
            let e = map
                .entry((p.package.clone(), p.version.clone(), p.arch.clone()))
                .or_insert_with(|| Input {
                    package: p.package.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    sha256: p.sha256.clone(),
                    size: p.size,
                    trees: Vec::new(),
                });
            e.trees.push(tree.clone());
        }
    }
    map.into_values().collect()
}

impl Manifest {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// `SHA256SUMS` for the given artifacts.
pub fn sha256sums(files: &[Artifact]) -> String {
    files
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.name))
        .collect()
}

pub use crate::calendar::rfc3339;

/// A UUID-shaped URN derived from content, so the SBOM is reproducible.
fn content_urn(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // name-based layout
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("building the SBOM: {0}")]
    Model(String),
    #[error("the SBOM does not validate against CycloneDX 1.5: {0}")]
    Invalid(String),
}

fn sha_hashes(sha256: &str) -> Hashes {
    Hashes(vec![Hash {
        alg: HashAlgorithm::SHA_256,
        content: HashValue(sha256.to_string()),
    }])
}

/// The CycloneDX 1.5 SBOM (JSON) of a build.
pub fn sbom(manifest: &Manifest) -> Result<String, SbomError> {
    let mut components = Vec::new();
    for i in &manifest.inputs {
        let mut c = Component::new(
            Classification::Library,
            &i.package,
            &i.version,
            Some(format!("deb:{}:{}:{}", i.package, i.version, i.arch)),
        );
        let purl = format!(
            "pkg:deb/debian/{}@{}?arch={}",
            i.package,
            i.version.replace(':', "%3A").replace('+', "%2B"),
            i.arch
        );
        c.purl = Some(
            purl.parse::<Purl>()
                .map_err(|()| SbomError::Model(format!("{purl} is not a valid package URL")))?,
        );
        c.hashes = Some(sha_hashes(&i.sha256));
        c.properties = Some(Properties(
            i.trees
                .iter()
                .map(|t| Property::new("bulkhead:tree", t))
                .collect(),
        ));
        components.push(c);
    }
    let mut iso = Component::new(
        Classification::OperatingSystem,
        &manifest.release,
        &manifest.version,
        Some(format!("iso:{}", manifest.output.name)),
    );
    iso.hashes = Some(sha_hashes(&manifest.output.sha256));
    let timestamp = DateTime::try_from(rfc3339(manifest.source_date_epoch))
        .map_err(|e| SbomError::Model(e.to_string()))?;
    let bom = Bom {
        serial_number: Some(
            UrnUuid::new(content_urn(&manifest.to_json()))
                .map_err(|e| SbomError::Model(format!("{e:?}")))?,
        ),
        metadata: Some(Metadata {
            timestamp: Some(timestamp),
            tools: None,
            authors: None,
            component: Some(iso),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: Some(Properties(
                std::iter::once(Property::new("bulkhead:builder", &manifest.builder))
                    .chain(
                        manifest
                            .toolchain
                            .iter()
                            .map(|t| Property::new("bulkhead:toolchain", t)),
                    )
                    .collect(),
            )),
            lifecycles: None,
        }),
        components: Some(Components(components)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    let result = cyclonedx_bom::validation::Validate::validate(&bom);
    if !result.passed() {
        return Err(SbomError::Invalid(format!("{result:?}")));
    }
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .map_err(|e| SbomError::Model(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| SbomError::Model(e.to_string()))?;
    Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::DebPin;

    fn lock() -> Lock {
        let pin = |p: &str, v: &str| DebPin {
            package: p.into(),
            version: v.into(),
            arch: "amd64".into(),
            sha256: "ab".repeat(32),
            size: 10,
        };
        let mut trees = BTreeMap::new();
        trees.insert(
            "live".into(),
            vec![pin("busybox-static", "1:1.35.0-4+b1"), pin("dpkg", "1.21")],
        );
        trees.insert("payload".into(), vec![pin("dpkg", "1.21")]);
        Lock {
            format: crate::lock::FORMAT,
            recipe_sha256: "0".repeat(64),
            resolved_at: "2026-12-01T00:00:00Z".into(),
            trees,
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            schema: SCHEMA.into(),
            release: "bulkhead".into(),
            version: "0.1.0".into(),
            builder: "bulkhead-iso 0.1.0".into(),
            source_date_epoch: 1_700_000_000,
            recipe_sha256: "1".repeat(64),
            lock_sha256: "2".repeat(64),
            inputs: inputs(&lock()),
            images: vec![],
            output: Artifact {
                name: "bulkhead-0.1.0-amd64.iso".into(),
                sha256: "cd".repeat(32),
                size: 2048,
            },
            refreshed: vec![],
            toolchain: Some("rustc 1.95.0 (59807616e 2026-04-14)\nrelease: 1.95.0\n".into()),
        }
    }

    #[test]
    fn inputs_are_merged_across_trees() {
        let i = inputs(&lock());
        assert_eq!(i.len(), 2);
        let dpkg = i.iter().find(|x| x.package == "dpkg").unwrap();
        assert_eq!(dpkg.trees, ["live", "payload"]);
    }

    #[test]
    fn sbom_is_valid_deterministic_cyclonedx() {
        let m = manifest();
        let a = sbom(&m).unwrap();
        assert_eq!(a, sbom(&m).unwrap());
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["bomFormat"], "CycloneDX");
        assert_eq!(v["specVersion"], "1.5");
        assert_eq!(v["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["components"].as_array().unwrap().len(), 2);
        let purl = v["components"][0]["purl"].as_str().unwrap();
        assert!(
            purl.starts_with("pkg:deb/debian/busybox-static@1"),
            "{purl}"
        );
        let props = v["metadata"]["properties"].as_array().unwrap();
        assert!(
            props.iter().any(|p| p["name"] == "bulkhead:toolchain"
                && p["value"].as_str().unwrap().contains("release: 1.95.0")),
            "{props:?}"
        );
        // Parsed back by the same library.
        let back = Bom::parse_from_json_v1_5(a.as_bytes()).unwrap();
        assert_eq!(back.components.unwrap().0.len(), 2);
    }

    #[test]
    fn sha256sums_format() {
        let s = sha256sums(&[manifest().output]);
        assert_eq!(
            s,
            format!("{}  bulkhead-0.1.0-amd64.iso\n", "cd".repeat(32))
        );
    }
}
