//! The AWS credential chain: which source gives the credentials, decided once per run as a
//! [`Provider`] (plain data), then fetched, and fetched again when they near their expiry.
//!
//! Order, first configured wins (the AWS SDKs' order, with the connector's `aws_session` keys
//! in front): the static keys of `aws_session`; the named `aws_session.aws_profile`; the
//! environment keys; a web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`); the
//! profile `AWS_PROFILE` (or `default`) of the shared files; container credentials
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`); EC2 instance metadata (IMDSv2),
//! unless `AWS_EC2_METADATA_DISABLED` is `true`.
//!
//! A profile gives, in this order: a role (`role_arn`) assumed with the credentials of its
//! `source_profile` (followed recursively, loops refused), its `credential_source`
//! (`Environment`, `Ec2InstanceMetadata`, `EcsContainer`) or its `web_identity_token_file`;
//! its static keys; its `credential_process`.
//!
//! Invariant: resolving the chain reads only the environment and the shared files; every
//! network call and process run happens in [`Provider::fetch`], bounded by the run's deadline,
//! and every credential it obtains or reads goes to the `register` sink before it is used.

use std::collections::BTreeMap;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::sts::{SESSION_NAME, Sts};
use super::{Credentials, MAX_PROFILE_FILE, SessionError, process, remote};
use crate::redact::Redactor;
use crate::schedule::Deadline;
use crate::settings::Settings;

/// Longest chain of `source_profile` links followed.
const MAX_PROFILE_DEPTH: usize = 8;

/// How to obtain credentials (again).
#[derive(Clone)]
pub(super) enum Provider {
    /// Keys read from the configuration, the environment or a profile; never refreshed.
    Static(Credentials),
    /// `sts:AssumeRoleWithWebIdentity` with the token of a file (EKS IRSA).
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    /// A profile's `credential_process`.
    Process { profile: String, command: String },
    /// The ECS / EKS pod identity container credentials endpoint.
    Container(remote::Container),
    /// EC2 instance metadata, IMDSv2. `last_resort`: reached because nothing else was
    /// configured, so its failure reads as "no credentials".
    Imds { endpoint: String, last_resort: bool },
    /// `sts:AssumeRole` with the credentials of `base`.
    AssumeRole {
        base: Box<Provider>,
        role_arn: String,
        session_name: String,
        external_id: Option<String>,
    },
}

impl Provider {
    /// Obtains credentials from this source; every secret met is given to `register` first.
    pub(super) fn fetch(
        &self,
        sts: &Sts,
        deadline: Deadline,
        register: &mut dyn FnMut(&str),
    ) -> Result<Credentials, SessionError> {
        let credentials = match self {
            Provider::Static(credentials) => credentials.clone(),
            Provider::WebIdentity {
                token_file,
                role_arn,
                session_name,
            } => {
                let failed = |reason: String| SessionError::WebIdentity {
                    role_arn: role_arn.clone(),
                    reason,
                };
                let token = crate::backends::file::read_text(token_file, MAX_PROFILE_FILE)
                    .map_err(|error| failed(format!("AWS_WEB_IDENTITY_TOKEN_FILE: {error}")))?;
                let token = Zeroizing::new(token.trim().to_owned());
                register(&token);
                sts.assume_role_with_web_identity(role_arn, session_name, &token)
                    .map_err(failed)?
            }
            Provider::Process { profile, command } => {
                process::run(command, deadline).map_err(|reason| SessionError::Source {
                    origin: format!("the credential_process of profile {profile:?}"),
                    reason,
                })?
            }
            Provider::Container(container) => {
                container
                    .fetch(deadline, register)
                    .map_err(|reason| SessionError::Source {
                        origin: format!("the container credentials endpoint {}", container.url),
                        reason,
                    })?
            }
            Provider::Imds {
                endpoint,
                last_resort,
            } => remote::imds(endpoint, deadline, register).map_err(|reason| {
                if *last_resort {
                    SessionError::NoCredentials(format!(
                        "; the EC2 instance metadata service at {endpoint} gave none: {reason}"
                    ))
                } else {
                    SessionError::Source {
                        origin: format!("the EC2 instance metadata service at {endpoint}"),
                        reason,
                    }
                }
            })?,
            Provider::AssumeRole {
                base,
                role_arn,
                session_name,
                external_id,
            } => {
                let base = base.fetch(sts, deadline, register)?;
                sts.assume_role(&base, role_arn, session_name, external_id.as_deref())
                    .map_err(|reason| SessionError::AssumeRole {
                        role_arn: role_arn.clone(),
                        reason,
                    })?
            }
        };
        register(&credentials.secret_access_key);
        if let Some(token) = &credentials.session_token {
            register(token);
        }
        Ok(credentials)
    }
}

/// What the chain is resolved from.
pub(super) struct Sources<'a, 's> {
    /// The `aws_session` section.
    pub(super) session: &'a Settings<'s>,
    /// `aws_session.aws_profile`, when configured.
    pub(super) profile_named: Option<&'a str>,
    pub(super) profiles: &'a Profiles,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

/// The first configured source of the chain.
pub(super) fn resolve(sources: &Sources<'_, '_>) -> Result<Provider, SessionError> {
    let session = sources.session;
    let id = session.string("aws_access_key_id")?;
    let secret = session.string("aws_secret_access_key")?;
    match (id, secret) {
        (Some(id), Some(secret)) => {
            return Ok(Provider::Static(Credentials {
                access_key_id: id.to_owned(),
                secret_access_key: Zeroizing::new(secret.to_owned()),
                session_token: session
                    .string("aws_session_token")?
                    .map(|token| Zeroizing::new(token.to_owned())),
                expires: None,
            }));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(session
                .invalid(
                    "aws_secret_access_key",
                    "is required with aws_access_key_id",
                )
                .into());
        }
        (None, Some(_)) => {
            return Err(session
                .invalid(
                    "aws_access_key_id",
                    "is required with aws_secret_access_key",
                )
                .into());
        }
    }
    let env = sources.env;
    if let Some(name) = sources.profile_named {
        return profile(sources, name, &mut Vec::new())?.ok_or_else(|| SessionError::Profile {
            name: name.to_owned(),
            reason: "has no credentials (no keys, role_arn or credential_process)".to_owned(),
        });
    }
    if let Some(found) = environment(env) {
        return Ok(found);
    }
    if let Some(found) = web_identity(env) {
        return Ok(found);
    }
    let default_profile = set(env, "AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    if sources.profiles.get(&default_profile).is_some()
        && let Some(found) = profile(sources, &default_profile, &mut Vec::new())?
    {
        return Ok(found);
    }
    if let Some(container) = remote::Container::from_env(env)? {
        return Ok(Provider::Container(container));
    }
    if imds_disabled(env) {
        return Err(SessionError::NoCredentials(
            " (AWS_EC2_METADATA_DISABLED is set, so instance metadata was not asked)".to_owned(),
        ));
    }
    Ok(Provider::Imds {
        endpoint: remote::imds_endpoint(env),
        last_resort: true,
    })
}

/// The provider of profile `name`, `None` when it holds no credentials.
fn profile(
    sources: &Sources<'_, '_>,
    name: &str,
    chain: &mut Vec<String>,
) -> Result<Option<Provider>, SessionError> {
    let failed = |reason: String| SessionError::Profile {
        name: name.to_owned(),
        reason,
    };
    let values = sources
        .profiles
        .get(name)
        .ok_or_else(|| SessionError::NoProfile(name.to_owned()))?;
    if chain.iter().any(|seen| seen == name) {
        return Err(failed(format!(
            "its source_profile chain loops: {} -> {name}",
            chain.join(" -> ")
        )));
    }
    if chain.len() >= MAX_PROFILE_DEPTH {
        return Err(failed(format!(
            "its source_profile chain is longer than {MAX_PROFILE_DEPTH} profiles"
        )));
    }
    chain.push(name.to_owned());
    let get = |key: &str| {
        values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let keys = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Some(Provider::Static(Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: Zeroizing::new(secret.to_owned()),
            session_token: get("aws_session_token").map(|token| Zeroizing::new(token.to_owned())),
            expires: None,
        })),
        _ => None,
    };
    let Some(role_arn) = get("role_arn") else {
        if keys.is_some() {
            return Ok(keys);
        }
        if let Some(command) = get("credential_process") {
            return Ok(Some(Provider::Process {
                profile: name.to_owned(),
                command: command.to_owned(),
            }));
        }
        if get("sso_start_url").is_some() || get("sso_session").is_some() {
            return Err(failed("uses AWS SSO, which is not supported".to_owned()));
        }
        return Ok(None);
    };
    let session_name = get("role_session_name").unwrap_or(SESSION_NAME).to_owned();
    let env = sources.env;
    let base = if let Some(source) = get("source_profile") {
        if source == name {
            keys.ok_or_else(|| failed("is its own source_profile but has no keys".to_owned()))?
        } else {
            profile(sources, source, chain)?.ok_or_else(|| {
                failed(format!("its source_profile {source:?} has no credentials"))
            })?
        }
    } else if let Some(source) = get("credential_source") {
        match source {
            "Environment" => environment(env).ok_or_else(|| {
                failed("credential_source Environment: AWS_ACCESS_KEY_ID is not set".to_owned())
            })?,
            "Ec2InstanceMetadata" => Provider::Imds {
                endpoint: remote::imds_endpoint(env),
                last_resort: false,
            },
            "EcsContainer" => {
                Provider::Container(remote::Container::from_env(env)?.ok_or_else(|| {
                    failed(
                        "credential_source EcsContainer: no AWS_CONTAINER_CREDENTIALS_* \
                         variable is set"
                            .to_owned(),
                    )
                })?)
            }
            other => {
                return Err(failed(format!(
                    "credential_source {other:?} is not one of Environment, \
                     Ec2InstanceMetadata, EcsContainer"
                )));
            }
        }
    } else if let Some(token_file) = get("web_identity_token_file") {
        return Ok(Some(Provider::WebIdentity {
            token_file: PathBuf::from(token_file),
            role_arn: role_arn.to_owned(),
            session_name,
        }));
    } else {
        return Err(failed(
            "has role_arn but no source_profile, credential_source or web_identity_token_file"
                .to_owned(),
        ));
    };
    Ok(Some(Provider::AssumeRole {
        base: Box::new(base),
        role_arn: role_arn.to_owned(),
        session_name,
        external_id: get("external_id").map(str::to_owned),
    }))
}

/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
fn environment(env: &dyn Fn(&str) -> Option<String>) -> Option<Provider> {
    Some(Provider::Static(Credentials {
        access_key_id: set(env, "AWS_ACCESS_KEY_ID")?,
        secret_access_key: Zeroizing::new(set(env, "AWS_SECRET_ACCESS_KEY")?),
        session_token: set(env, "AWS_SESSION_TOKEN").map(Zeroizing::new),
        expires: None,
    }))
}

/// `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (EKS IRSA), when both are set.
fn web_identity(env: &dyn Fn(&str) -> Option<String>) -> Option<Provider> {
    Some(Provider::WebIdentity {
        token_file: PathBuf::from(set(env, "AWS_WEB_IDENTITY_TOKEN_FILE")?),
        role_arn: set(env, "AWS_ROLE_ARN")?,
        session_name: set(env, "AWS_ROLE_SESSION_NAME").unwrap_or_else(|| SESSION_NAME.to_owned()),
    })
}

pub(super) fn imds_disabled(env: &dyn Fn(&str) -> Option<String>) -> bool {
    set(env, "AWS_EC2_METADATA_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// A non-empty environment variable.
pub(super) fn set(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|value| !value.is_empty())
}

/// The profiles of the shared credentials and config files, merged (credentials file first).
pub(super) struct Profiles {
    profiles: BTreeMap<String, BTreeMap<String, String>>,
}

impl Profiles {
    /// Reads both files; a missing or unreadable file contributes nothing. Credential-like
    /// values are registered with the redactor.
    pub(super) fn load(env: &dyn Fn(&str) -> Option<String>, redactor: &mut Redactor) -> Profiles {
        let home = env("HOME").map(PathBuf::from);
        let path = |variable: &str, default: &str| {
            set(env, variable)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
        };
        let mut profiles = Profiles {
            profiles: BTreeMap::new(),
        };
        for (file, is_config) in [
            (path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), false),
            (path("AWS_CONFIG_FILE", "config"), true),
        ] {
            let Some(text) = file
                .and_then(|file| crate::backends::file::read_text(&file, MAX_PROFILE_FILE).ok())
            else {
                continue;
            };
            profiles.merge(&text, is_config, redactor);
        }
        profiles
    }

    /// Adds the profiles of one file; keys already known win.
    fn merge(&mut self, text: &str, is_config: bool, redactor: &mut Redactor) {
        for (name, values) in parse_ini(text, is_config) {
            let profile = self.profiles.entry(name).or_default();
            for (key, value) in values {
                if key.contains("secret") || key.contains("token") {
                    redactor.add(&value);
                }
                profile.entry(key).or_insert(value);
            }
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.profiles.get(name)
    }
}

/// Sections of an AWS INI file. In the config file, `[profile NAME]` names profile `NAME`.
fn parse_ini(text: &str, is_config: bool) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let header = header.trim();
            let name = match header.strip_prefix("profile ") {
                Some(name) if is_config => name.trim(),
                _ => header,
            };
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some((key, value)), Some((_, values))) =
            (line.split_once('='), sections.last_mut())
        {
            values.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    #[test]
    fn ini_profiles() {
        let text = "# c\n[default]\naws_access_key_id = AKIA1\nregion=eu-west-1\n\n\
                    [profile dev]\nregion = us-east-2\n[plain]\nkey = v = w\n";
        let sections = parse_ini(text, true);
        let names: Vec<&str> = sections.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["default", "dev", "plain"]);
        assert_eq!(sections[2].1, [("key".to_owned(), "v = w".to_owned())]);
        assert_eq!(parse_ini("[profile dev]\n", false)[0].0, "profile dev");
    }

    /// What a provider is, in short, for comparing chains.
    fn describe(provider: &Provider) -> String {
        match provider {
            Provider::Static(credentials) => format!("keys {}", credentials.access_key_id),
            Provider::WebIdentity { role_arn, .. } => format!("web identity {role_arn}"),
            Provider::Process { profile, command } => format!("process {profile}: {command}"),
            Provider::Container(container) => format!("container {}", container.url),
            Provider::Imds {
                endpoint,
                last_resort,
            } => format!("imds {endpoint} {last_resort}"),
            Provider::AssumeRole { base, role_arn, .. } => {
                format!("{role_arn} with ({})", describe(base))
            }
        }
    }

    fn chain(config: &str, env: &[(&str, &str)], profile_named: Option<&str>) -> String {
        let mut profiles = Profiles {
            profiles: BTreeMap::new(),
        };
        profiles.merge(config, true, &mut Redactor::default());
        let map = Map::<String, Value>::new();
        let session = Settings::new(Some(&map));
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        let sources = Sources {
            session: &session,
            profile_named,
            profiles: &profiles,
            env: &lookup,
        };
        match resolve(&sources) {
            Ok(provider) => describe(&provider),
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn source_profile_chains_and_their_failures() {
        let config = "[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s1\n\
                      [profile mid]\nrole_arn = arn:mid\nsource_profile = base\n\
                      [profile top]\nrole_arn = arn:top\nsource_profile = mid\n\
                      [profile self]\nrole_arn = arn:self\nsource_profile = self\n\
                      aws_access_key_id = AKIASELF\naws_secret_access_key = s2\n\
                      [profile a]\nrole_arn = arn:a\nsource_profile = b\n\
                      [profile b]\nrole_arn = arn:b\nsource_profile = a\n\
                      [profile proc]\ncredential_process = /bin/creds --x\n\
                      [profile viaproc]\nrole_arn = arn:p\nsource_profile = proc\n\
                      [profile imds]\nrole_arn = arn:i\ncredential_source = Ec2InstanceMetadata\n\
                      [profile ecs]\nrole_arn = arn:e\ncredential_source = EcsContainer\n\
                      [profile wif]\nrole_arn = arn:w\nweb_identity_token_file = /t\n\
                      [profile bare]\nrole_arn = arn:x\n\
                      [profile sso]\nsso_session = corp\n\
                      [profile empty]\nregion = eu-west-1\n";
        let env = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")];
        for (name, expected) in [
            ("base", "keys AKIABASE"),
            ("top", "arn:top with (arn:mid with (keys AKIABASE))"),
            ("self", "arn:self with (keys AKIASELF)"),
            (
                "a",
                "error: AWS profile \"a\": its source_profile chain loops: a -> b -> a",
            ),
            ("proc", "process proc: /bin/creds --x"),
            ("viaproc", "arn:p with (process proc: /bin/creds --x)"),
            ("imds", "arn:i with (imds http://127.0.0.1:9 false)"),
            (
                "ecs",
                "error: AWS profile \"ecs\": credential_source EcsContainer: no \
                 AWS_CONTAINER_CREDENTIALS_* variable is set",
            ),
            ("wif", "web identity arn:w"),
            (
                "bare",
                "error: AWS profile \"bare\": has role_arn but no source_profile",
            ),
            (
                "sso",
                "error: AWS profile \"sso\": uses AWS SSO, which is not supported",
            ),
            ("empty", "error: AWS profile \"empty\": has no credentials"),
            (
                "missing",
                "error: AWS profile \"missing\" not found in the shared credentials or config file",
            ),
        ] {
            let got = chain(config, &env, Some(name));
            assert!(got.starts_with(expected), "{name}: {got}");
        }
    }

    #[test]
    fn chain_order_without_a_named_profile() {
        let profile = "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n";
        let keys = [
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ];
        let web = [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:web"),
        ];
        let container = [("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds")];
        let all: Vec<(&str, &str)> = keys.iter().chain(&web).chain(&container).copied().collect();
        assert_eq!(chain(profile, &all, None), "keys AKIAENV");
        assert_eq!(chain(profile, &all[2..], None), "web identity arn:web");
        assert_eq!(chain(profile, &container, None), "keys AKIAPROFILE");
        assert_eq!(
            chain("", &container, None),
            "container http://169.254.170.2/v2/creds"
        );
        assert_eq!(chain("", &[], None), "imds http://169.254.169.254 true");
        assert!(
            chain("", &[("AWS_EC2_METADATA_DISABLED", "TRUE")], None)
                .starts_with("error: no AWS credentials")
        );
        assert_eq!(
            chain(
                "",
                &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")],
                None
            ),
            "imds http://[fd00:ec2::254] true"
        );
    }
}
