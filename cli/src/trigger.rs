//! `trigger`: one realistic signed delivery of any of the 20 event kinds, from templates compiled
//! into the binary, with fresh ids and times every time.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use clap::builder::PossibleValuesParser;
use http::Uri;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::delivery::Delivery;
use crate::key::KeyArgs;
use crate::output::{Failure, Output};
use crate::send::{self, Plan};

/// The templates, one per event kind, in `EventKind::ALL` order: the repository's sample
/// deliveries with `{{token}}`s where each delivery gets fresh ids and times.
const TEMPLATES: [(&str, &str); 20] = [
    ("chat.created", include_str!("../templates/chat.created.json")),
    ("chat.notification.created", include_str!("../templates/chat.notification.created.json")),
    ("chat.custom_properties.updated", include_str!("../templates/chat.custom_properties.updated.json")),
    ("message.created", include_str!("../templates/message.created.json")),
    ("message.updated", include_str!("../templates/message.updated.json")),
    ("message.deleted", include_str!("../templates/message.deleted.json")),
    ("message.ack.updated", include_str!("../templates/message.ack.updated.json")),
    ("message.flagged", include_str!("../templates/message.flagged.json")),
    ("message.unflagged", include_str!("../templates/message.unflagged.json")),
    ("message.ticket.attached", include_str!("../templates/message.ticket.attached.json")),
    ("reaction.created", include_str!("../templates/reaction.created.json")),
    ("reaction.updated", include_str!("../templates/reaction.updated.json")),
    ("ticket.created", include_str!("../templates/ticket.created.json")),
    ("ticket.updated", include_str!("../templates/ticket.updated.json")),
    ("ticket.deleted", include_str!("../templates/ticket.deleted.json")),
    ("note.created", include_str!("../templates/note.created.json")),
    ("org.phone.connected", include_str!("../templates/org.phone.connected.json")),
    ("org.phone.disconnected", include_str!("../templates/org.phone.disconnected.json")),
    ("org.phone.updated", include_str!("../templates/org.phone.updated.json")),
    ("org.phone.qr", include_str!("../templates/org.phone.qr.json")),
];

/// Where `trigger` sends without --to: the examples' default address and route.
const DEFAULT_URL: &str = "http://127.0.0.1:3000/webhooks/periskope";

/// Send one realistic signed delivery of EVENT, as Periskope would, built from a sample compiled
/// into this program. Ids (message, reaction, note, ticket, notification, new chat) and times are
/// fresh on every delivery, so a de-duplicating server handles each one.
///
/// Output and exit status are `send`'s.
#[derive(Args, Debug)]
pub struct TriggerArgs {
    /// The event kind.
    #[arg(value_name = "EVENT", value_parser = PossibleValuesParser::new(TEMPLATES.map(|(name, _)| name)))]
    event: String,

    /// Where to POST (plain HTTP).
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL, value_parser = send::parse_url)]
    to: Uri,

    /// Set a field of the delivery: PATH is dot-separated (`data.body`, `data.mentioned_ids.0`;
    /// an index one past a list's end appends). Where the template has a string, VALUE is that
    /// string; elsewhere it is JSON when it parses as JSON (`data.ack=3`), a string otherwise.
    /// Repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_text_assignment)]
    assignments: Vec<Assignment>,

    /// Set a field to raw JSON, whatever the template has there: `data.ack=3`,
    /// `data.mentioned_ids=["919876543210@c.us"]`. Applied after every --set. Repeatable.
    #[arg(long = "set-json", value_name = "PATH=JSON", value_parser = parse_json_assignment)]
    json_assignments: Vec<Assignment>,

    /// Send N deliveries, each with its own ids.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,

    /// Write each body (compact JSON, one per line) to standard output instead of sending it;
    /// no key is needed.
    #[arg(long)]
    print: bool,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    #[command(flatten)]
    key: KeyArgs,
}

/// One `--set PATH=VALUE` or `--set-json PATH=JSON`.
#[derive(Clone, Debug)]
struct Assignment {
    path: Vec<String>,
    value: Assigned,
}

/// What an assignment sets.
#[derive(Clone, Debug)]
enum Assigned {
    /// `--set`'s text: typed by the value it replaces (see [`Assigned::at`]).
    Text(String),
    /// `--set-json`'s JSON, set as it is.
    Json(Json),
}

impl Assigned {
    /// The value to put where `replaced` is (`None` for a new member or list item): text stays
    /// text where the template has a string, so that `data.sender_phone=919876543210` does not
    /// become a number the app cannot decode; elsewhere text that parses as JSON is JSON.
    fn at(&self, replaced: Option<&Json>) -> Json {
        match self {
            Assigned::Json(json) => json.clone(),
            Assigned::Text(text) if matches!(replaced, Some(Json::Scalar(Value::String(_)))) => {
                Json::Scalar(Value::String(text.clone()))
            }
            Assigned::Text(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Json::Scalar(Value::String(text.clone())))
            }
        }
    }
}

/// `PATH=VALUE` as its dot-separated path and its value.
fn split_assignment(text: &str) -> Result<(Vec<String>, &str), String> {
    let (path, value) = text.split_once('=').ok_or("expected PATH=VALUE, e.g. data.body=hello")?;
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("`{path}` is not a dot-separated path such as data.body"));
    }
    Ok((parts, value))
}

fn parse_text_assignment(text: &str) -> Result<Assignment, String> {
    let (path, value) = split_assignment(text)?;
    Ok(Assignment { path, value: Assigned::Text(value.to_owned()) })
}

fn parse_json_assignment(text: &str) -> Result<Assignment, String> {
    let (path, value) = split_assignment(text)?;
    let json = serde_json::from_str(value)
        .map_err(|error| format!("the value is not JSON ({error}); use --set for text"))?;
    Ok(Assignment { path, value: Assigned::Json(json) })
}

pub fn trigger(args: TriggerArgs, output: &Output) -> Result<(), Failure> {
    let template = TEMPLATES
        .iter()
        .find(|(name, _)| *name == args.event)
        .map(|(_, template)| *template)
        .ok_or_else(|| Failure::Error(format!("no template for {}", args.event)))?;
    let mut deliveries = Vec::new();
    for number in 1..=args.count {
        let mut body = render(template)?;
        for assignment in args.assignments.iter().chain(&args.json_assignments) {
            assign(&mut body, assignment)?;
        }
        let body = serde_json::to_vec(&body).map_err(|error| Failure::Error(error.to_string()))?;
        let source = if args.count == 1 { "trigger".to_owned() } else { format!("trigger #{number}") };
        deliveries.push(Delivery { source, name: args.event.clone(), body });
    }
    if args.print {
        for delivery in &deliveries {
            let body = String::from_utf8_lossy(&delivery.body);
            // Under --json, the body goes inside a line of its own type, unchanged: Periskope's
            // member order, and the exact bytes a signature covers.
            let line = format!(
                r#"{{"type":"delivery","event":{},"body":{body}}}"#,
                serde_json::Value::from(delivery.name.as_str())
            );
            output.raw_line(&body, &line);
        }
        return Ok(());
    }
    let key = args.key.signing_key(output)?;
    let plan =
        Plan { url: args.to, concurrency: 1, rate: None, repeat: 1, tamper: false, timeout: args.timeout };
    send::deliver(deliveries, &key, &plan, output)
}

/// The template as JSON with each `{{token}}` replaced; one token is one value in a delivery (a
/// message id and its `id._serialized` stay equal).
fn render(template: &str) -> Result<Json, Failure> {
    let mut template: Json = serde_json::from_str(template)
        .map_err(|error| Failure::Error(format!("a compiled-in template is not JSON: {error}")))?;
    let mut tokens = Tokens { now: fresh_micros(), values: Vec::new() };
    replace_tokens(&mut template, &mut tokens);
    Ok(template)
}

fn replace_tokens(value: &mut Json, tokens: &mut Tokens) {
    match value {
        Json::Scalar(Value::String(text)) if text.contains("{{") => *text = tokens.fill(text),
        Json::Scalar(_) => {}
        Json::Array(items) => items.iter_mut().for_each(|item| replace_tokens(item, tokens)),
        Json::Object(members) => {
            for (name, member) in members {
                if name.contains("{{") {
                    *name = tokens.fill(name);
                }
                replace_tokens(member, tokens);
            }
        }
    }
}

/// JSON that keeps the order of object members, as Periskope's deliveries have them (`event`
/// first); `serde_json::Value` sorts them.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    /// A string, number, boolean or null.
    Scalar(Value),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members: Vec<(String, Json)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Json>()? {
                    // A repeated member: the last one counts, as in JSON.parse.
                    members.retain(|(known, _)| *known != name);
                    members.push((name, value));
                }
                Ok(Json::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Bool(value)))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
                Ok(Json::Scalar(value.into()))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
                Ok(Json::Scalar(value.into()))
            }
            fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
                Ok(Json::Scalar(value.into()))
            }
            fn visit_str<E>(self, value: &str) -> Result<Json, E> {
                Ok(Json::Scalar(Value::String(value.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (name, value) in members {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Scalar(value) => value.serialize(serializer),
        }
    }
}

/// The values of one delivery's tokens.
struct Tokens {
    /// Microseconds since the Unix epoch.
    now: u64,
    values: Vec<(String, String)>,
}

impl Tokens {
    /// `text` with each `{{name}}` replaced by its value; an unknown name is left as it is.
    fn fill(&mut self, text: &str) -> String {
        let mut filled = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            filled.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) => {
                    filled.push_str(
                        &self.value(&after[..end]).unwrap_or_else(|| rest[start..start + end + 4].to_owned()),
                    );
                    rest = &after[end + 2..];
                }
                None => {
                    filled.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        filled.push_str(rest);
        filled
    }

    fn value(&mut self, name: &str) -> Option<String> {
        if let Some((_, value)) = self.values.iter().find(|(known, _)| known == name) {
            return Some(value.clone());
        }
        let value = match name {
            "now" => format_time(self.now, Precision::Millis),
            "now_us" => format_time(self.now, Precision::Micros),
            "now_s" => format_time(self.now, Precision::Seconds),
            "now_pg" => format_time(self.now, Precision::Postgres),
            "ticket" => format!("TICKET-{}", random_digits(8)),
            "phone_number" => format!("91{}", random_digits(10)),
            _ if name.starts_with("wa_message_") => format!("3EB0{}", random_hex(18).to_uppercase()),
            _ if name.starts_with("hex_") => random_hex(32),
            _ if name.starts_with("uuid_") => uuid_v4(),
            _ => return None,
        };
        self.values.push((name.to_owned(), value.clone()));
        Some(value)
    }
}

/// Sets the member at `assignment.path`, creating missing object members on the way; an index
/// one past a list's end appends to the list.
fn assign(body: &mut Json, assignment: &Assignment) -> Result<(), Failure> {
    let path = assignment.path.join(".");
    let mut at = body;
    for (depth, part) in assignment.path.iter().enumerate() {
        let last = depth + 1 == assignment.path.len();
        let slot = match at {
            Json::Object(members) => match members.iter().position(|(name, _)| name == part) {
                Some(index) => &mut members[index].1,
                None => {
                    members.push((
                        part.clone(),
                        if last { assignment.value.at(None) } else { Json::Object(Vec::new()) },
                    ));
                    if last {
                        return Ok(());
                    }
                    &mut members.last_mut().expect("a member was just pushed").1
                }
            },
            Json::Array(items) => {
                let index =
                    part.parse::<usize>().ok().filter(|index| *index <= items.len()).ok_or_else(|| {
                        Failure::Error(format!(
                            "--set {path}: `{part}` is not an index of the list there (0 to {})",
                            items.len()
                        ))
                    })?;
                if index == items.len() {
                    items.push(if last { assignment.value.at(None) } else { Json::Object(Vec::new()) });
                    if last {
                        return Ok(());
                    }
                }
                &mut items[index]
            }
            _ => {
                return Err(Failure::Error(format!(
                    "--set {path}: `{part}` is inside a value that is neither an object nor a list"
                )));
            }
        };
        if last {
            *slot = assignment.value.at(Some(slot));
            return Ok(());
        }
        at = slot;
    }
    Ok(())
}

/// How a time is written: the forms Periskope's deliveries use.
#[derive(Clone, Copy)]
pub(crate) enum Precision {
    /// `2024-05-13T17:27:15+00:00`
    Seconds,
    /// `2025-01-20T07:51:48.209+00:00`, the envelope's form.
    Millis,
    /// `2024-12-15T11:47:26.668505+00:00`
    Micros,
    /// `2024-05-13 11:19:34+00`, PostgreSQL's text form in message and reaction objects.
    Postgres,
}

/// Now, in microseconds since the Unix epoch, at least a millisecond after the last time this
/// returned: two deliveries made in one millisecond still differ in every time they carry.
pub(crate) fn fresh_micros() -> u64 {
    static LAST: Mutex<u64> = Mutex::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let fresh = now.max(*last + 1000);
    *last = fresh;
    fresh
}

/// `micros` since the Unix epoch as a UTC time in the form `precision` names.
pub(crate) fn format_time(micros: u64, precision: Precision) -> String {
    let seconds = micros / 1_000_000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let time = format!("{hour:02}:{minute:02}:{second:02}");
    match precision {
        Precision::Seconds => format!("{date}T{time}+00:00"),
        Precision::Millis => format!("{date}T{time}.{:03}+00:00", micros % 1_000_000 / 1000),
        Precision::Micros => format!("{date}T{time}.{:06}+00:00", micros % 1_000_000),
        Precision::Postgres => format!("{date} {time}+00"),
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    // Without the system's randomness, the clock still makes ids that differ between runs.
    if getrandom::fill(&mut bytes).is_err() {
        let now = fresh_micros().to_le_bytes();
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = now[index % now.len()] ^ (index as u8).wrapping_mul(151);
        }
    }
    bytes
}

fn random_hex(digits: usize) -> String {
    random_bytes::<32>().iter().flat_map(|byte| [byte >> 4, byte & 0xf]).take(digits).map(hex_digit).collect()
}

fn random_digits(digits: usize) -> String {
    random_bytes::<32>().iter().take(digits).map(|byte| char::from(b'0' + byte % 10)).collect()
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

fn uuid_v4() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().flat_map(|byte| [byte >> 4, byte & 0xf]).map(hex_digit).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use periskope_webhook::{EventData, EventKind, WebhookEvent};

    use super::*;

    #[test]
    fn there_is_one_template_per_kind() {
        let names: Vec<&str> = TEMPLATES.iter().map(|(name, _)| *name).collect();
        let kinds: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(names, kinds);
    }

    #[test]
    fn every_template_renders_to_its_typed_kind_with_no_token_left() {
        for (name, template) in TEMPLATES {
            let body = serde_json::to_vec(&render(template).unwrap()).unwrap();
            let text = String::from_utf8(body.clone()).unwrap();
            assert!(!text.contains("{{"), "{name}: {text}");
            let delivery = WebhookEvent::decode(body.into()).unwrap();
            assert_eq!(delivery.name(), name);
            assert!(
                !matches!(delivery.event().data, EventData::Unknown { .. } | EventData::Undecodable { .. }),
                "{name}: {:?}",
                delivery.event().data
            );
        }
    }

    #[test]
    fn a_token_is_one_value_within_a_delivery_and_fresh_in_the_next() {
        let template =
            r#"{"a":"x_{{wa_message_1}}_y","b":"{{wa_message_1}}","c":"{{now}}","d":"{{unknown}}"}"#;
        let first = serde_json::to_value(render(template).unwrap()).unwrap();
        let second = serde_json::to_value(render(template).unwrap()).unwrap();
        assert_eq!(first["a"], format!("x_{}_y", first["b"].as_str().unwrap()));
        assert_eq!(first["b"].as_str().unwrap().len(), 22);
        assert_ne!(first["b"], second["b"]);
        assert_ne!(first["c"], second["c"], "times are a millisecond apart at least");
        assert_eq!(first["d"], "{{unknown}}");
    }

    #[test]
    fn times_are_written_in_periskopes_forms() {
        // 2025-01-20T07:51:48.209123Z
        let micros = 1_737_359_508_209_123;
        assert_eq!(format_time(micros, Precision::Millis), "2025-01-20T07:51:48.209+00:00");
        assert_eq!(format_time(micros, Precision::Micros), "2025-01-20T07:51:48.209123+00:00");
        assert_eq!(format_time(micros, Precision::Seconds), "2025-01-20T07:51:48+00:00");
        assert_eq!(format_time(micros, Precision::Postgres), "2025-01-20 07:51:48+00");
        assert_eq!(format_time(951_782_400_000_000, Precision::Seconds), "2000-02-29T00:00:00+00:00");
        assert_eq!(format_time(0, Precision::Seconds), "1970-01-01T00:00:00+00:00");
    }

    #[test]
    fn set_keeps_the_templates_strings_and_creates_members() {
        let mut body: Json = serde_json::from_str(
            r#"{"data":{"body":"x","ack":"2","n":1,"list":[1,2],"empty":[]},"event":"e"}"#,
        )
        .unwrap();
        for text in [
            "data.body=hello",
            "data.ack=3",
            "data.n=5",
            "data.list.1=\"two\"",
            "data.list.2=3",
            "data.empty.0=x",
            "data.new.deep=true",
            "data.o={\"z\":1,\"a\":2}",
        ] {
            assign(&mut body, &parse_text_assignment(text).unwrap()).unwrap();
        }
        assign(&mut body, &parse_json_assignment("data.body=7").unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"data":{"body":7,"ack":"3","n":5,"list":[1,"two",3],"empty":["x"],"new":{"deep":true},"o":{"z":1,"a":2}},"event":"e"}"#
        );
        assert!(assign(&mut body, &parse_text_assignment("data.n.x=1").unwrap()).is_err());
        assert!(assign(&mut body, &parse_text_assignment("data.list.9=1").unwrap()).is_err());
        assert!(parse_text_assignment("data..body=1").is_err());
        assert!(parse_text_assignment("data.body").is_err());
        assert!(parse_json_assignment("data.body=hello").is_err());
    }

    /// Every string of a rendered template, with the name of the member that holds it.
    fn strings<'j>(json: &'j Json, member: &'j str, found: &mut Vec<(&'j str, &'j str)>) {
        match json {
            Json::Scalar(Value::String(text)) => found.push((member, text)),
            Json::Scalar(_) => {}
            Json::Array(items) => items.iter().for_each(|item| strings(item, member, found)),
            Json::Object(members) => {
                for (name, value) in members {
                    found.push(("", name));
                    strings(value, name, found);
                }
            }
        }
    }

    #[test]
    fn templates_carry_ids_that_parse_and_one_org_id() {
        for (name, template) in TEMPLATES {
            let body = render(template).unwrap();
            let envelope = serde_json::to_value(&body).unwrap();
            let org_id = envelope["org_id"].as_str().unwrap_or_else(|| panic!("{name}: no org_id"));
            assert!(
                org_id.len() == 36 && org_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
                "{name}: {org_id}"
            );
            let mut found = Vec::new();
            strings(&body, "", &mut found);
            for (member, text) in found {
                if member == "org_id" {
                    assert_eq!(text, org_id, "{name}: every org_id is the envelope's");
                }
                // Each WhatsApp id in the text: digits, then @c.us (a phone) or @g.us (a group).
                for (at, _) in text.match_indices('@').filter(|(at, _)| {
                    text[at + 1..].starts_with("c.us") || text[at + 1..].starts_with("g.us")
                }) {
                    let digits = text[..at].chars().rev().take_while(|c| c.is_ascii_alphanumeric()).count();
                    let user = &text[at - digits..at];
                    let group = text[at + 1..].starts_with("g.us");
                    assert!(
                        user.bytes().all(|b| b.is_ascii_digit())
                            && (10..=18).contains(&user.len())
                            && (!group || user.len() == 18),
                        "{name}: {member} = {text}"
                    );
                }
            }
            if let Some(ack) = envelope["data"].get("ack") {
                assert!(ack.is_string(), "{name}: Periskope sends ack as a string: {ack}");
            }
        }
    }

    #[test]
    fn member_order_is_the_templates() {
        let body = serde_json::to_string(&render(TEMPLATES[3].1).unwrap()).unwrap();
        assert!(body.starts_with(r#"{"event":"message.created","data":{"message_id":"#), "{body}");
    }

    #[test]
    fn uuids_are_version_4() {
        let uuid = uuid_v4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
    }
}
