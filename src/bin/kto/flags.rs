//! `kto train`'s settings flags, built from the engine's settings list (`kto::settings`): one
//! flag per setting, its default and help taken from there, so the CLI never restates them.

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, parser::ValueSource};
use kto_studio::kto::{Setting, SettingKind, TrainConfig, settings};
use serde_json::{Map, Value};

/// The training settings given on the command line, over those of a `--settings` file.
pub struct TrainFlags {
    /// Settings named on the command line (or all of them, with defaults, when none came from a file).
    pub explicit: Map<String, Value>,
    pub defaults: Map<String, Value>,
}

fn is_flipped(s: &Setting) -> bool {
    matches!(s.kind, SettingKind::Bool) && s.default == Value::Bool(true)
}

fn arg(s: &Setting) -> Arg {
    let name = s.flag.to_uppercase().replace('-', "_");
    let help = match s.trl_default {
        Some(t) => format!("{} (TRL: {t})", s.help),
        None => s.help.to_string(),
    };
    let text = |v: &Value| match v {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    match &s.kind {
        // A setting that is on by default is turned off with --no-FLAG.
        SettingKind::Bool if is_flipped(s) => {
            Arg::new(s.key).long(format!("no-{}", s.flag)).action(ArgAction::SetTrue).help(format!("Turn off: {help}"))
        }
        SettingKind::Bool => Arg::new(s.key).long(s.flag).action(ArgAction::SetTrue).help(help),
        SettingKind::Choice { options } => Arg::new(s.key)
            .long(s.flag)
            .value_name(name)
            .value_parser(PossibleValuesParser::new(options.iter().map(|(v, _)| *v)))
            .default_value(text(&s.default))
            .help(help),
        SettingKind::Number { .. } => Arg::new(s.key)
            .long(s.flag)
            .value_name(name)
            .value_parser(clap::value_parser!(f64))
            .default_value(text(&s.default))
            .allow_negative_numbers(true)
            .help(help),
        SettingKind::List => Arg::new(s.key).long(s.flag).value_name(name).default_value(text(&s.default)).help(help),
    }
}

impl Args for TrainFlags {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(settings().iter().map(arg))
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for TrainFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let (mut explicit, mut defaults) = (Map::new(), Map::new());
        for s in settings() {
            let value = match &s.kind {
                SettingKind::Bool => Value::Bool(m.get_flag(s.key) != is_flipped(&s)),
                SettingKind::Number { integer: true, .. } => m.get_one::<f64>(s.key).map_or(Value::Null, |&x| {
                    if x >= 0.0 && x.fract() == 0.0 { Value::from(x as u64) } else { Value::from(x) }
                }),
                SettingKind::Number { .. } => m.get_one::<f64>(s.key).map_or(Value::Null, |&x| Value::from(x)),
                _ => m.get_one::<String>(s.key).map_or(Value::Null, |x| Value::String(x.clone())),
            };
            if m.value_source(s.key) == Some(ValueSource::CommandLine) {
                explicit.insert(s.key.to_string(), value);
            } else {
                defaults.insert(s.key.to_string(), value);
            }
        }
        // Any --lora-* flag asks for LoRA unless --method says otherwise.
        if !explicit.contains_key("method") && explicit.keys().any(|k| k.starts_with("lora_")) {
            explicit.insert("method".into(), Value::from("lora"));
        }
        Ok(Self { explicit, defaults })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl TrainFlags {
    /// The config: defaults, then the `file`'s settings (a JSON object of settings), then the
    /// flags given on the command line.
    pub fn config(&self, file: Option<&Map<String, Value>>) -> kto_studio::Result<TrainConfig> {
        let mut all = self.defaults.clone();
        if let Some(f) = file {
            all.extend(f.clone());
        }
        all.extend(self.explicit.clone());
        TrainConfig::from_settings(&all)
    }

    /// Whether a setting was named on the command line.
    pub fn given(&self, key: &str) -> bool {
        self.explicit.contains_key(key)
    }
}
