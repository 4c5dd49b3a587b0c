//! The policy file: parsing, validation, escalation and display.
use std::cmp::Ordering;

use super::display::{compact_json, iban, is_rfc3339};
use super::raw::is_json_pointer;
use super::*;
use crate::domain::InitiatorType;
use crate::jcs;

fn tx(json: &[u8]) -> Value {
    match jcs::parse_object(json) {
        Ok(value) => value,
        Err(_) => panic!(
            "test transaction is not valid JSON: {}",
            String::from_utf8_lossy(json)
        ),
    }
}

fn builtin() -> Policy {
    match Policy::builtin() {
        Ok(policy) => policy,
        Err(err) => panic!("builtin policy does not parse: {err}"),
    }
}

fn action<'a>(policy: &'a Policy, id: &str) -> &'a ActionPolicy {
    match policy.action(id) {
        Some(action) => action,
        None => panic!("no action {id}"),
    }
}

fn dec(s: &str) -> Decimal {
    match s.parse() {
        Ok(d) => d,
        Err(_) => panic!("not a decimal: {s}"),
    }
}

fn payment(amount: &str) -> Value {
    tx(format!(
        r#"{{"amount":"{amount}","currency":"EUR","payee":{{"name":"ACME GmbH","iban":"de89370400440532013000"}}}}"#
    )
    .as_bytes())
}

fn evaluate(action: &ActionPolicy, tx: &Value, risk: Option<u32>) -> Requirement {
    match action.evaluate(tx, risk, InitiatorType::Person) {
        Ok(requirement) => requirement,
        Err(err) => panic!("refused: {err}"),
    }
}

fn refusal(action: &ActionPolicy, tx: &Value) -> TxRefusal {
    match action.evaluate(tx, None, InitiatorType::Person) {
        Ok(requirement) => panic!("accepted: {requirement:?}"),
        Err(err) => err,
    }
}

const MINIMAL: &str = r#"
[[action]]
id = "test.action"
title = "Test"
audiences = ["svc"]
approvers = ["team"]
quorum = 1
request_ttl = "30m"
receipt_ttl = "5m"

[[action.display]]
label = "Amount"
pointer = "/amount"
format = "money"
currency_pointer = "/currency"

[[action.rule]]
name = "big"
when = { pointer = "/amount", at_least = "100" }
quorum = 2
"#;

fn parse_error(text: &str) -> String {
    match Policy::parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(err) => err.to_string(),
    }
}

/// Replaces `from` in MINIMAL (which must occur) and expects an error
/// naming the action and every one of `needles`.
fn assert_invalid(from: &str, to: &str, needles: &[&str]) {
    assert!(MINIMAL.contains(from), "{from:?} not in MINIMAL");
    let message = parse_error(&MINIMAL.replacen(from, to, 1));
    assert!(
        message.contains("action \"test.action\"") || to.contains("id ="),
        "{message}"
    );
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[test]
fn builtin_parses_with_the_documented_actions() {
    let policy = builtin();
    let ids: Vec<&str> = policy.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "payment.transfer",
            "admin.role_change",
            "secret.export",
            "vendor.bank_change"
        ]
    );

    let pay = action(&policy, "payment.transfer");
    assert_eq!(pay.audiences, ["payments-service"]);
    assert_eq!(
        pay.stages,
        [Stage {
            name: "default".into(),
            groups: vec!["finance".into()],
            quorum: 1
        }]
    );
    assert!(!pay.self_approval);
    assert_eq!(pay.request_ttl, Duration::from_secs(30 * 60));
    assert_eq!(pay.receipt_ttl, Duration::from_secs(5 * 60));
    let labels: Vec<&str> = pay.display.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["Amount", "Payee", "IBAN", "Reference"]);
    assert_eq!(pay.display[0].format, Format::Money);
    assert_eq!(
        pay.display[0].currency_pointer.as_deref(),
        Some("/currency")
    );
    assert_eq!(pay.display[2].format, Format::Iban);
    assert!(pay.display[3].optional);
    assert_eq!(
        pay.rules[0].when,
        Condition::AtLeast {
            pointer: "/amount".into(),
            at_least: dec("10000.00")
        }
    );
    assert_eq!(
        pay.rules[1].when,
        Condition::RiskAtLeast { risk_at_least: 70 }
    );

    let admin = action(&policy, "admin.role_change");
    assert_eq!(admin.audiences, ["admin-console"]);
    assert_eq!(
        admin.rules[0].when,
        Condition::Equals {
            pointer: "/role".into(),
            equals: "owner".into()
        }
    );

    let secret = action(&policy, "secret.export");
    assert_eq!(secret.stages[0].quorum, 2);
    assert_eq!(secret.receipt_ttl, Duration::from_secs(120));
    assert_eq!(secret.display[2].format, Format::Datetime);
    assert!(secret.display[2].optional);

    let groups: Vec<String> = policy.groups().into_iter().collect();
    assert_eq!(
        groups,
        ["admins", "cfo", "finance", "finance-senior", "security"]
    );
    assert!(policy.action("nope").is_none());
}

#[test]
fn revision_is_base64url_sha256_of_the_bytes() {
    let policy = builtin();
    assert_eq!(
        policy.revision,
        URL_SAFE_NO_PAD.encode(Sha256::digest(BUILTIN.as_bytes()))
    );
    assert_eq!(policy.revision.len(), 43);
    assert!(!policy.revision.contains(['=', '+', '/']));
    let edited = match Policy::parse(&format!("{BUILTIN}\n# edited\n")) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    assert_ne!(edited.revision, policy.revision);
}

#[test]
fn minimal_policy_parses_with_defaults() {
    let text = MINIMAL
        .replace("request_ttl = \"30m\"\n", "")
        .replace("receipt_ttl = \"5m\"\n", "");
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "test.action");
    assert_eq!(a.request_ttl, DEFAULT_REQUEST_TTL);
    assert_eq!(a.receipt_ttl, DEFAULT_RECEIPT_TTL);
    assert!(!a.self_approval);
}

#[test]
fn unknown_keys_are_refused_naming_key_and_line() {
    let message = parse_error(&MINIMAL.replace("quorum = 1\n", "quorum = 1\nquorom = 2\n"));
    assert!(message.contains("action \"test.action\""), "{message}");
    assert!(message.contains("unknown field `quorom`"), "{message}");
    assert!(message.contains("line 8"), "{message}");

    let message =
        parse_error(&MINIMAL.replace("format = \"money\"", "format = \"money\"\nlabell = 1"));
    assert!(message.contains("action \"test.action\""), "{message}");
    assert!(message.contains("unknown field `labell`"), "{message}");

    let message =
        parse_error(&MINIMAL.replace("at_least = \"100\"", "at_least = \"100\", at_most = \"5\""));
    assert!(message.contains("unknown field `at_most`"), "{message}");

    let message = parse_error(&format!("version = 2\n{MINIMAL}"));
    assert!(message.starts_with("policy file:"), "{message}");
    assert!(message.contains("unknown field `version`"), "{message}");

    let message = parse_error(&MINIMAL.replace("[[action.rule]]", "[[action.rules]]"));
    assert!(message.contains("unknown field `rules`"), "{message}");
}

#[test]
fn toml_type_and_missing_key_errors_name_the_action() {
    let message = parse_error(&MINIMAL.replace("quorum = 1", "quorum = -1"));
    assert!(message.contains("action \"test.action\""), "{message}");
    assert!(message.contains("quorum"), "{message}");

    let message = parse_error(&MINIMAL.replace("title = \"Test\"\n", ""));
    assert!(message.contains("action \"test.action\""), "{message}");
    assert!(message.contains("missing field `title`"), "{message}");

    let message = parse_error(&MINIMAL.replace("format = \"money\"", "format = \"cash\""));
    assert!(message.contains("unknown variant `cash`"), "{message}");

    // A syntax error leaves no id to read: the action is named by position.
    let message = parse_error(&format!("{MINIMAL}\n[[action]]\nid = \"broken"));
    assert!(message.contains("action #2"), "{message}");
}

#[test]
fn no_actions_is_refused() {
    assert_eq!(
        parse_error("# nothing\n"),
        "policy file: at least one [[action]] is required"
    );
}

#[test]
fn action_level_validation_errors() {
    assert_invalid("quorum = 1", "quorum = 0", &["quorum must be at least 1"]);
    assert_invalid(
        "title = \"Test\"",
        "title = \" \"",
        &["title must not be empty"],
    );
    assert_invalid(
        "audiences = [\"svc\"]",
        "audiences = []",
        &["audiences must not be empty"],
    );
    assert_invalid(
        "audiences = [\"svc\"]",
        "audiences = [\"svc\", \"\"]",
        &["audiences must not contain an empty name"],
    );
    assert_invalid(
        "approvers = [\"team\"]",
        "approvers = []",
        &["approvers must not be empty"],
    );
    assert_invalid(
        "approvers = [\"team\"]",
        "approvers = [\"\"]",
        &["approvers must not contain an empty name"],
    );
    assert_invalid(
        "request_ttl = \"30m\"",
        "request_ttl = \"59s\"",
        &["request_ttl must be between 1m and 7d"],
    );
    assert_invalid(
        "request_ttl = \"30m\"",
        "request_ttl = \"8d\"",
        &["request_ttl must be between 1m and 7d"],
    );
    assert_invalid(
        "request_ttl = \"30m\"",
        "request_ttl = \"soon\"",
        &["request_ttl \"soon\" is not a duration"],
    );
    assert_invalid(
        "receipt_ttl = \"5m\"",
        "receipt_ttl = \"29s\"",
        &["receipt_ttl must be between 30s and 60m"],
    );
    assert_invalid(
        "receipt_ttl = \"5m\"",
        "receipt_ttl = \"2h\"",
        &["receipt_ttl must be between 30s and 60m"],
    );

    for bounds in ["request_ttl = \"1m\"", "request_ttl = \"7d\""] {
        assert!(Policy::parse(&MINIMAL.replace("request_ttl = \"30m\"", bounds)).is_ok());
    }
    for bounds in ["receipt_ttl = \"30s\"", "receipt_ttl = \"60m\""] {
        assert!(Policy::parse(&MINIMAL.replace("receipt_ttl = \"5m\"", bounds)).is_ok());
    }
}

#[test]
fn action_ids_are_checked_and_unique() {
    for bad in ["Payment", "", ".x", "a b", "x/y"] {
        let message =
            parse_error(&MINIMAL.replace("id = \"test.action\"", &format!("id = {bad:?}")));
        assert!(
            message.contains(&format!("action {bad:?}: id must match")),
            "{message}"
        );
    }
    let message = parse_error(&format!("{MINIMAL}{MINIMAL}"));
    assert_eq!(
        message,
        "action \"test.action\": id is used by more than one action"
    );
}

#[test]
fn display_validation_errors() {
    assert_invalid(
        "pointer = \"/amount\"\nformat",
        "pointer = \"amount\"\nformat",
        &["display \"Amount\": pointer \"amount\" is not an RFC 6901 JSON pointer"],
    );
    assert_invalid(
        "pointer = \"/amount\"\nformat",
        "pointer = \"/am~2ount\"\nformat",
        &["display \"Amount\": pointer"],
    );
    assert_invalid(
        "currency_pointer = \"/currency\"",
        "currency_pointer = \"currency\"",
        &["display \"Amount\": currency_pointer \"currency\" is not an RFC 6901"],
    );
    assert_invalid(
        "format = \"money\"",
        "format = \"text\"",
        &["display \"Amount\": currency_pointer is only allowed with format = \"money\""],
    );
    assert_invalid(
        "label = \"Amount\"",
        "label = \"\"",
        &["display #1: label must not be empty"],
    );
}

#[test]
fn rule_validation_errors() {
    assert_invalid(
        "name = \"big\"",
        "name = \"default\"",
        &["rule #1: name", "reserved"],
    );
    assert_invalid(
        "name = \"big\"",
        "name = \"a+b\"",
        &["rule #1: name \"a+b\" must match"],
    );
    assert_invalid(
        "quorum = 2",
        "quorum = 0",
        &["rule \"big\": quorum must be at least 1"],
    );
    assert_invalid(
        "quorum = 2",
        "add_quorum = 0",
        &["rule \"big\": add_quorum must be at least 1"],
    );
    assert_invalid(
        "quorum = 2",
        "approvers = []",
        &["rule \"big\": approvers must not be empty"],
    );
    assert_invalid(
        "quorum = 2",
        "approvers = [\"\"]",
        &["rule \"big\": approvers must not contain"],
    );
    assert_invalid(
        "quorum = 2\n",
        "\n",
        &["rule \"big\" needs at least one of approvers, quorum, add_quorum or add_stage"],
    );
    assert_invalid(
        "at_least = \"100\"",
        "at_least = \"1e5\"",
        &["rule \"big\": when.at_least \"1e5\" is not a decimal string"],
    );
    assert_invalid(
        "when = { pointer = \"/amount\", at_least = \"100\" }",
        "when = { pointer = \"amount\", at_least = \"100\" }",
        &["rule \"big\": when.pointer \"amount\" is not an RFC 6901"],
    );
    let shape = "rule \"big\": when must be exactly one of";
    for when in [
        "when = { pointer = \"/amount\" }",
        "when = { at_least = \"1\" }",
        "when = { pointer = \"/a\", at_least = \"1\", equals = \"x\" }",
        "when = { pointer = \"/a\", risk_at_least = 5 }",
        "when = { risk_at_least = 5, equals = \"x\" }",
        "when = {}",
    ] {
        assert_invalid(
            "when = { pointer = \"/amount\", at_least = \"100\" }",
            when,
            &[shape],
        );
    }
    assert_invalid(
        "when = { pointer = \"/amount\", at_least = \"100\" }",
        "when = { risk_at_least = 101 }",
        &["rule \"big\": when.risk_at_least must be at most 100"],
    );
    let twice = MINIMAL.replace(
        "[[action.rule]]",
        "[[action.rule]]\nname = \"big\"\nwhen = { risk_at_least = 1 }\nadd_quorum = 1\n\n[[action.rule]]",
    );
    assert_eq!(
        parse_error(&twice),
        "action \"test.action\": rule \"big\": name is used by more than one rule of this action"
    );
}

#[test]
fn json_pointer_syntax() {
    for ok in ["", "/", "/a", "/a/0", "/a~0b/c~1d", "/~01"] {
        assert!(is_json_pointer(ok), "{ok}");
    }
    for bad in ["a", "/a~", "/a~2", "~0", "/~x"] {
        assert!(!is_json_pointer(bad), "{bad}");
    }
}

#[test]
fn decimals_are_exact() {
    assert!(dec("9999.99") < dec("10000.00"));
    assert_eq!(dec("10000.00"), dec("10000.0"));
    assert_eq!(dec("10000.00"), dec("10000"));
    assert_eq!(dec("10000.00").cmp(&dec("10000.0")), Ordering::Equal);
    assert!(dec("10000.0") < dec("10000.01"));
    assert!(dec("0.5") < dec("0.50001"));
    assert!(dec("0.09") < dec("0.1"));
    assert!(dec("0") < dec("0.0000000000000000000000001"));
    assert!(dec("12") > dec("9.999999"));
    // Beyond f64 and i128 precision alike.
    let big = "123456789012345678901234567890123456789012345678901234567890";
    assert!(dec(&format!("{big}.000000000000000000000000000001")) > dec(big));
    assert!(dec(&format!("{big}.1")) < dec(&format!("1{big}")));
    assert_eq!(dec(&format!("{big}.10")), dec(&format!("{big}.1")));
    assert!(dec("9007199254740993") > dec("9007199254740992"));

    for bad in [
        "", ".", "-5.00", "+5", "1e5", "1,000.00", "01", "00.5", ".5", "5.", "1.2.3", " 1", "1 ",
        "０",
    ] {
        assert!(bad.parse::<Decimal>().is_err(), "{bad:?}");
    }
    for good in ["0", "0.5", "12", "10000.00", "0.000"] {
        assert!(good.parse::<Decimal>().is_ok(), "{good:?}");
    }
    assert_eq!(Decimal::from_i64(10000), Some(dec("10000.00")));
    assert_eq!(Decimal::from_i64(-1), None);
    assert_eq!(Decimal::from_u64(0), dec("0.00"));
    assert_eq!(dec("10000.500").to_string(), "10000.5");
}

#[test]
fn threshold_escalates_at_and_above() {
    let policy = builtin();
    let pay = action(&policy, "payment.transfer");
    let below = evaluate(pay, &payment("9999.99"), None);
    assert_eq!(
        below,
        Requirement {
            stages: vec![crate::domain::Stage {
                name: "default".into(),
                groups: vec!["finance".into()],
                quorum: 1
            }],
            rules: vec![],
        }
    );
    for amount in [
        "10000.00",
        "10000",
        "10000.0",
        "10000.01",
        "123456789012345678901234567890.5",
    ] {
        let at = evaluate(pay, &payment(amount), None);
        assert_eq!(
            at,
            Requirement {
                stages: vec![crate::domain::Stage {
                    name: "default".into(),
                    groups: vec!["finance-senior".into()],
                    quorum: 2
                }],
                rules: vec!["large-payment".into()],
            },
            "{amount}"
        );
    }
}

#[test]
fn risk_escalates_at_seventy() {
    let policy = builtin();
    let pay = action(&policy, "payment.transfer");
    let small = payment("50.00");
    assert_eq!(evaluate(pay, &small, Some(69)).approvals(), 1);
    assert_eq!(evaluate(pay, &small, None).rule_label(), "default");
    let risky = evaluate(pay, &small, Some(70));
    assert_eq!(risky.approvals(), 2);
    assert_eq!(risky.groups(), ["finance"]);
    assert_eq!(risky.rule_label(), "risky");

    let both = evaluate(pay, &payment("25000.00"), Some(100));
    assert_eq!(both.approvals(), 3);
    assert_eq!(both.groups(), ["finance-senior"]);
    assert_eq!(both.rule_label(), "large-payment+risky");
    assert_eq!(both.rules, ["large-payment", "risky"]);
}

#[test]
fn rules_can_match_the_kind_of_initiator() {
    let text = MINIMAL.replace(
        "when = { pointer = \"/amount\", at_least = \"100\" }",
        "when = { initiator_type = \"agent\" }",
    );
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "test.action");
    let t = tx(br#"{"amount":"5","currency":"EUR"}"#);
    for (kind, approvals) in [
        (InitiatorType::Person, 1),
        (InitiatorType::Service, 1),
        (InitiatorType::Agent, 2),
    ] {
        match a.evaluate(&t, None, kind) {
            Ok(r) => assert_eq!(r.approvals(), approvals, "{kind:?}"),
            Err(e) => panic!("{e}"),
        }
    }
    let bad = MINIMAL.replace(
        "when = { pointer = \"/amount\", at_least = \"100\" }",
        "when = { initiator_type = \"robot\" }",
    );
    assert!(parse_error(&bad).contains("when.initiator_type"));
    let mixed = MINIMAL.replace(
        "at_least = \"100\" }",
        "at_least = \"100\", initiator_type = \"agent\" }",
    );
    assert!(parse_error(&mixed).contains("must be exactly one of"));
}

#[test]
fn quorum_rule_raises_but_never_lowers() {
    let text = MINIMAL.replace("quorum = 1", "quorum = 3");
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "test.action");
    let req = evaluate(a, &tx(br#"{"amount":"500","currency":"EUR"}"#), None);
    assert_eq!(req.approvals(), 3);
    assert_eq!(req.rule_label(), "big");
}

#[test]
fn equals_rule() {
    let policy = builtin();
    let admin = action(&policy, "admin.role_change");
    let owner = evaluate(admin, &tx(br#"{"user":"ann","role":"owner"}"#), None);
    assert_eq!(
        (owner.approvals(), owner.rule_label()),
        (2, "owner-role".into())
    );
    let viewer = evaluate(admin, &tx(br#"{"user":"ann","role":"Owner"}"#), None);
    assert_eq!(
        (viewer.approvals(), viewer.rule_label()),
        (1, "default".into())
    );
}

#[test]
fn at_least_fails_closed() {
    // The rule pointer is not a displayed field here, so only the rule guards it.
    let text = MINIMAL.replace(
        "pointer = \"/amount\", at_least",
        "pointer = \"/limit\", at_least",
    );
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "test.action");
    assert_eq!(
        refusal(a, &tx(br#"{"amount":"5","currency":"EUR"}"#)),
        TxRefusal::RuleFieldMissing {
            rule: "big".into(),
            pointer: "/limit".into()
        }
    );
    for limit in [r#""1e5""#, r#""-5.00""#, "-5", "true", r#"{"v":1}"#, "null"] {
        let tx = tx(format!(r#"{{"amount":"5","currency":"EUR","limit":{limit}}}"#).as_bytes());
        assert!(
            matches!(
                refusal(a, &tx),
                TxRefusal::RuleFieldNotDecimal { .. } | TxRefusal::RuleFieldMissing { .. }
            ),
            "{limit}"
        );
    }
    // A JSON integer is an exact amount, so rules accept it.
    let req = evaluate(
        a,
        &tx(br#"{"amount":"5","currency":"EUR","limit":100}"#),
        None,
    );
    assert_eq!(req.approvals(), 2);
    let req = evaluate(
        a,
        &tx(br#"{"amount":"5","currency":"EUR","limit":99}"#),
        None,
    );
    assert_eq!(req.approvals(), 1);
}

#[test]
fn invalid_transactions_are_refused() {
    let policy = builtin();
    let pay = action(&policy, "payment.transfer");
    let missing = refusal(
        pay,
        &tx(br#"{"currency":"EUR","payee":{"name":"A","iban":"DE89"}}"#),
    );
    assert_eq!(
        missing.to_string(),
        r#"missing required field "/amount" (label "Amount")"#
    );
    let null_amount = refusal(
        pay,
        &tx(br#"{"amount":null,"currency":"EUR","payee":{"name":"A","iban":"DE89"}}"#),
    );
    assert!(matches!(null_amount, TxRefusal::MissingField { .. }));

    for amount in [
        r#""-5.00""#,
        r#""1e5""#,
        r#""1,000.00""#,
        r#""""#,
        "1000",
        "true",
    ] {
        let t = tx(format!(
            r#"{{"amount":{amount},"currency":"EUR","payee":{{"name":"A","iban":"DE89"}}}}"#
        )
        .as_bytes());
        let err = refusal(pay, &t);
        assert_eq!(
            err.to_string(),
            r#"field "/amount" is not a decimal string"#,
            "{amount}"
        );
    }

    let no_currency = refusal(
        pay,
        &tx(br#"{"amount":"5.00","payee":{"name":"A","iban":"DE89"}}"#),
    );
    assert_eq!(
        no_currency,
        TxRefusal::MissingCurrency {
            pointer: "/amount".into(),
            currency_pointer: "/currency".into()
        }
    );
    let no_payee = refusal(
        pay,
        &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"iban":"DE89"}}"#),
    );
    assert_eq!(
        no_payee.to_string(),
        r#"missing required field "/payee/name" (label "Payee")"#
    );
    let object_payee = refusal(
        pay,
        &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"name":{"x":1},"iban":"DE89"}}"#),
    );
    assert!(matches!(object_payee, TxRefusal::NotText { .. }));
    let bad_iban = refusal(
        pay,
        &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"name":"A","iban":"DE89-3704"}}"#),
    );
    assert!(matches!(bad_iban, TxRefusal::NotIban { .. }));
    let lookalike = refusal(pay, &tx("{\"amount\":\"5.00\",\"currency\":\"EUR\",\"payee\":{\"name\":\"A\",\"iban\":\"DE89 37О4\"}}".as_bytes()));
    assert!(matches!(lookalike, TxRefusal::NotIban { .. }));
    // Optional fields may be absent.
    assert!(pay
        .evaluate(&payment("5.00"), None, InitiatorType::Person)
        .is_ok());

    let secret = action(&policy, "secret.export");
    let ok =
        tx(br#"{"secret":"db/root","destination":"vault-b","until":"2025-03-01T12:00:00+01:00"}"#);
    assert!(secret.evaluate(&ok, None, InitiatorType::Person).is_ok());
    let bad = tx(br#"{"secret":"db/root","destination":"vault-b","until":"next tuesday"}"#);
    assert_eq!(
        refusal(secret, &bad).to_string(),
        r#"field "/until" is not an RFC 3339 date-time string"#
    );
}

#[test]
fn rfc3339_datetimes() {
    for ok in [
        "2025-03-01T12:00:00Z",
        "2025-03-01t12:00:00z",
        "2025-03-01T12:00:00.123456+01:00",
        "2024-02-29T23:59:60-12:30",
        "2000-02-29T00:00:00Z",
    ] {
        assert!(is_rfc3339(ok), "{ok}");
    }
    for bad in [
        "",
        "2025-03-01",
        "2025-03-01T12:00:00",
        "2025-03-01 12:00:00Z",
        "2025-13-01T12:00:00Z",
        "2025-02-29T12:00:00Z",
        "1900-02-29T12:00:00Z",
        "2025-04-31T12:00:00Z",
        "2025-03-01T24:00:00Z",
        "2025-03-01T12:00:00.Z",
        "2025-03-01T12:00:00+0100",
        "2025-03-01T12:00:00+24:00",
        "+025-03-01T12:00:00Z",
        "2025-03-01T12:00:00Zjunk",
        "2025-03-01T12:00:0éZ",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}

#[test]
fn display_values_are_formatted() {
    let policy = builtin();
    let pay = action(&policy, "payment.transfer");
    let t = tx(br#"{"amount":"1234567.5","currency":"EUR","payee":{"name":"ACME \"Widgets\"","iban":"de89 3704 0044 0532 0130 00"}}"#);
    let values = pay.display_values(&t);
    assert_eq!(
        values[0],
        DisplayValue {
            label: "Amount".into(),
            format: Format::Money,
            raw: "1234567.5".into(),
            formatted: "1,234,567.5".into(),
            currency: Some("EUR".into()),
            present: true,
        }
    );
    assert_eq!(values[1].formatted, "ACME \"Widgets\"");
    assert_eq!(values[2].formatted, "DE89 3704 0044 0532 0130 00");
    assert_eq!(values[2].raw, "de89 3704 0044 0532 0130 00");
    assert_eq!(
        values[3],
        DisplayValue {
            label: "Reference".into(),
            format: Format::Text,
            raw: String::new(),
            formatted: "—".into(),
            currency: None,
            present: false,
        }
    );

    for (raw, formatted) in [
        ("0.99", "0.99"),
        ("0", "0"),
        ("999", "999"),
        ("1000", "1,000"),
        ("1250.00", "1,250.00"),
        ("100000.000", "100,000.000"),
        ("1000000", "1,000,000"),
    ] {
        assert_eq!(money(raw), formatted);
    }
    assert_eq!(
        iban("DE89370400440532013000"),
        "DE89 3704 0044 0532 0130 00"
    );
    assert_eq!(
        iban("gb29nwbk60161331926819"),
        "GB29 NWBK 6016 1331 9268 19"
    );
}

#[test]
fn text_and_json_display() {
    let text = r#"
[[action]]
id = "t"
title = "T"
audiences = ["a"]
approvers = ["g"]
quorum = 1

[[action.display]]
label = "Count"
pointer = "/n"

[[action.display]]
label = "Flag"
pointer = "/b"

[[action.display]]
label = "Items"
pointer = "/items"
format = "json"

[[action.display]]
label = "When"
pointer = "/when"
format = "datetime"
"#;
    let policy = match Policy::parse(text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "t");
    let t = tx(
        br#"{"n":-42,"b":true,"items":[1,"two\n\"",{"k":null},[]],"when":"2025-03-01T12:00:00Z"}"#,
    );
    assert!(a.evaluate(&t, None, InitiatorType::Person).is_ok());
    let values = a.display_values(&t);
    let formatted: Vec<&str> = values.iter().map(|v| v.formatted.as_str()).collect();
    assert_eq!(
        formatted,
        [
            "-42",
            "true",
            r#"[1,"two\n\"",{"k":null},[]]"#,
            "2025-03-01T12:00:00Z"
        ]
    );
    assert!(values.iter().all(|v| v.present && v.currency.is_none()));
    assert_eq!(
        compact_json(&tx(b"{\"c\":\"\\u0001\"}")),
        "{\"c\":\"\\u0001\"}"
    );
}

#[test]
fn every_leaf_the_display_fields_do_not_show_is_listed() {
    let policy = builtin();
    let a = action(&policy, "payment.transfer");
    let t = tx(br#"{"amount":"1.00","currency":"EUR","payee":{"name":"ACME","iban":"DE89370400440532013000"},"note":"pay twice","second/payee":{"a~b":[1,true,null,{},[]]}}"#);
    let others = a.other_fields(&t);
    let listed: Vec<(&str, &str)> = others
        .iter()
        .map(|o| (o.pointer.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("/note", "pay twice"),
            ("/second~1payee/a~0b/0", "1"),
            ("/second~1payee/a~0b/1", "true"),
            ("/second~1payee/a~0b/2", "null"),
            ("/second~1payee/a~0b/3", "{}"),
            ("/second~1payee/a~0b/4", "[]"),
        ]
    );
    // Only the displayed ones: nothing else to list.
    assert!(a.other_fields(&payment("1.00")).is_empty());
}

#[test]
fn a_shown_pointer_covers_what_is_under_it_and_nothing_beside_it() {
    let t = tx(br#"{"payee":{"name":"A","iban":"B"},"payees":["C"]}"#);
    let pointers = |shown: &[&str]| -> Vec<String> {
        other_fields(&t, shown)
            .into_iter()
            .map(|o| o.pointer)
            .collect()
    };
    assert_eq!(pointers(&["/payee"]), ["/payees/0"]);
    assert_eq!(pointers(&["/payee/name"]), ["/payee/iban", "/payees/0"]);
    assert_eq!(
        pointers(&["/pay"]),
        ["/payee/name", "/payee/iban", "/payees/0"]
    );
    assert!(pointers(&[""]).is_empty());
    assert!(
        other_fields(&tx(b"{}"), &[]).len() == 1,
        "an empty object is a leaf"
    );
}

const STAGED: &str = r#"
[[action]]
id = "vendor.bank_change"
title = "Vendor bank change"
audiences = ["erp"]

[[action.stage]]
name = "finance"
approvers = ["finance"]
quorum = 1

[[action.stage]]
name = "security"
approvers = ["security", "ciso"]
quorum = 1

[[action.rule]]
name = "big"
when = { pointer = "/amount", at_least = "100" }
stage = "security"
add_quorum = 1

[[action.rule]]
name = "huge"
when = { pointer = "/amount", at_least = "1000" }
add_stage = { name = "cfo", approvers = ["cfo"], quorum = 1 }
"#;

fn stage(name: &str, groups: &[&str], quorum: u32) -> Stage {
    Stage {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        quorum,
    }
}

#[test]
fn stages_are_all_required_and_rules_change_or_add_them() {
    let policy = match Policy::parse(STAGED) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "vendor.bank_change");
    let small = evaluate(a, &tx(br#"{"amount":"5"}"#), None);
    assert_eq!(
        small.stages,
        [
            stage("finance", &["finance"], 1),
            stage("security", &["security", "ciso"], 1)
        ]
    );
    assert_eq!(small.approvals(), 2);
    let huge = evaluate(a, &tx(br#"{"amount":"5000"}"#), None);
    assert_eq!(
        huge.stages,
        [
            stage("finance", &["finance"], 1),
            stage("security", &["security", "ciso"], 2),
            stage("cfo", &["cfo"], 1)
        ]
    );
    assert_eq!(huge.rule_label(), "big+huge");
    assert!(policy.groups().contains("cfo"), "added stages' groups too");
}

#[test]
fn stage_validation_errors() {
    let invalid = |from: &str, to: &str, needle: &str| {
        let message = parse_error(&STAGED.replacen(from, to, 1));
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    };
    invalid(
        "audiences = [\"erp\"]",
        "audiences = [\"erp\"]\napprovers = [\"x\"]\nquorum = 1",
        "use one or the other, never both",
    );
    invalid(
        "name = \"finance\"\napprovers = [\"finance\"]\nquorum = 1",
        "name = \"finance\"\napprovers = [\"finance\"]\nquorum = 0",
        "stage \"finance\": quorum must be at least 1",
    );
    invalid(
        "name = \"security\"",
        "name = \"finance\"",
        "used by more than one stage",
    );
    invalid("name = \"security\"", "name = \"Sec urity\"", "must match");
    invalid(
        "stage = \"security\"\n",
        "",
        "the action has several stages",
    );
    invalid(
        "stage = \"security\"",
        "stage = \"legal\"",
        "\"legal\" is not a stage",
    );
    invalid(
        "add_stage = { name = \"cfo\"",
        "add_stage = { name = \"finance\"",
        "names a stage this action has already",
    );
    invalid(
        "approvers = [\"cfo\"], quorum = 1 }",
        "approvers = [\"cfo\"], quorum = 0 }",
        "add_stage.quorum must be at least 1",
    );
    let no_approvers = MINIMAL.replace("approvers = [\"team\"]\n", "");
    assert!(parse_error(&no_approvers).contains("go together"));
    let neither = no_approvers.replace("quorum = 1\n", "");
    assert!(parse_error(&neither).contains("[[action.stage]] entries"));
}

#[test]
fn redacted_fields_are_replaced_by_their_commitment() {
    let text = MINIMAL.replace(
        "[[action.rule]]",
        "[[action.display]]\nlabel = \"Key\"\npointer = \"/key\"\nredact = true\n\n[[action.rule]]",
    );
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(err) => panic!("{err}"),
    };
    let a = action(&policy, "test.action");
    let t = tx(br#"{"amount":"5","currency":"EUR","key":{"k":"s3cret"}}"#);
    let Some((stored, redactions)) = a.redact(&t, || [7; 32]) else {
        panic!("a secret to redact")
    };
    assert_eq!(
        redactions,
        [Redaction {
            pointer: "/key".into(),
            salt: [7; 32]
        }]
    );
    let sealed = commitment(&[7; 32], t.pointer("/key").unwrap_or(&Value::Null));
    assert_eq!(
        jcs::canonicalize(&stored),
        format!(r#"{{"amount":"5","currency":"EUR","key":{{"redacted":"{sealed}"}}}}"#)
    );
    let shown = a.display_values(&stored);
    assert_eq!(shown[1].formatted, REDACTED);
    assert!(
        a.other_fields(&stored).is_empty(),
        "the commitment is the field"
    );
    // Absent (or null): nothing to redact.
    assert!(a
        .redact(&tx(br#"{"amount":"5","currency":"EUR"}"#), || [7; 32])
        .is_none());
    // A rule may not look at a secret, nor at what holds one.
    for pointer in ["/key", "/key/k"] {
        let bad = text.replace(
            "when = { pointer = \"/amount\", at_least = \"100\" }",
            &format!("when = {{ pointer = \"{pointer}\", equals = \"x\" }}"),
        );
        assert!(
            parse_error(&bad).contains("a rule cannot look at a secret"),
            "{pointer}"
        );
    }
}

#[test]
fn console_changes_are_a_built_in_action_set_by_the_admin_table() {
    let policy = builtin();
    assert_eq!(policy.admin.quorum, 1);
    let admin = policy.admin_action("admins");
    assert_eq!(admin.id, ADMIN_ACTION);
    assert!(!admin.self_approval);
    assert_eq!(admin.audiences, [ADMIN_AUDIENCE]);
    assert_eq!(
        admin.stages,
        [Stage {
            name: DEFAULT_STAGE.into(),
            groups: vec!["admins".into()],
            quorum: 1
        }]
    );
    assert!(
        policy.action(ADMIN_ACTION).is_none(),
        "added by the server, not the file"
    );

    let two = match Policy::parse(&format!(
        "{MINIMAL}\n[admin]\nquorum = 2\nrequest_ttl = \"2h\"\n"
    )) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(two.admin.quorum, 2);
    assert_eq!(
        two.admin_action("ops").request_ttl,
        Duration::from_secs(7200)
    );
    assert_eq!(two.admin_action("ops").stages[0].groups, ["ops"]);

    for (text, says) in [
        ("[admin]\nquorum = 0\n", "at least 1"),
        ("[admin]\nquorom = 2\n", "unknown field"),
        ("[admin]\nrequest_ttl = \"30s\"\n", "between 1m and 7d"),
        (
            "[[action]]\nid = \"countersign.admin\"\ntitle = \"x\"\naudiences = [\"a\"]\napprovers = [\"admins\"]\nquorum = 1\n",
            "built in",
        ),
    ] {
        let err = parse_error(&format!("{MINIMAL}\n{text}"));
        assert!(err.contains(says), "{text}: {err}");
    }
}
