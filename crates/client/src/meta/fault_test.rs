use super::*;

#[test]
fn every_kind_round_trips_through_its_name() {
    for kind in CommandKind::ALL {
        assert_eq!(CommandKind::parse(kind.as_str()), Some(kind));
    }
    let names: BTreeSet<_> = CommandKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), CommandKind::ALL.len());
}

#[test]
fn specs_parse_to_plans() {
    let plan = FaultPlan::parse(" put_version, delete_object ,,").expect("valid");
    assert!(plan.matches(CommandKind::PutVersion));
    assert!(plan.matches(CommandKind::DeleteObject));
    assert!(!plan.matches(CommandKind::CreateBucket));
    assert_eq!(FaultPlan::parse("all"), Ok(FaultPlan::all()));
    assert_eq!(FaultPlan::parse("put_part,all"), Ok(FaultPlan::all()));
    assert!(FaultPlan::parse("").expect("empty").is_empty());
    let err = FaultPlan::parse("put_version,put_verson").expect_err("typo");
    assert_eq!(
        err,
        FaultSpecError::UnknownKind {
            name: "put_verson".into()
        }
    );
    assert_eq!(err.code(), "fault_unknown_kind");
    assert!(!err.is_retryable());
}
