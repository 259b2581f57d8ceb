//! Handlers of typed model events, and hooks that read the store and publish through
//! their context.

use super::*;

static REGISTERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler("member.created", name = "registered_member_handler")]
async fn registered_member_handler(event: ModelEvent<Member>, ctx: &HandlerContext) {
    REGISTERED
        .lock()
        .unwrap()
        .push(format!("{} {}", ctx.envelope().name, event.model.username));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_handler_takes_typed_model_events() {
    let bus = EventBus::builder()
        .only(["registered_member_handler"])
        .allow_unhandled(true)
        .build()
        .await
        .unwrap();
    let store = Store::builder(&bus).prefix(unique_prefix()).memory();
    store.create(Member::new("grace", "g@x.org")).await.unwrap();
    wait_until("the registered handler", || {
        !REGISTERED.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*REGISTERED.lock().unwrap(), ["member.created grace"]);
    bus.shutdown().await.unwrap();
}

/// An order of a member: its hook reads the store and publishes through its context.
#[derive(eventflow::Model, Clone, Debug, Serialize, Deserialize)]
#[model(name = "order")]
struct Order {
    #[model(id)]
    id: Option<i64>,
    member: i64,
}

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.checked")]
struct OrderChecked {
    member: String,
}

#[hooks]
impl Order {
    #[before_create]
    async fn member_exists(&mut self, ctx: &HookContext) -> Result<(), HookError> {
        let Some(member) = ctx
            .store()
            .get::<Member>(self.member)
            .await
            .map_err(HookError::msg)?
        else {
            return Err(HookError::veto(format!("no member {}", self.member)));
        };
        ctx.publish(OrderChecked {
            member: member.username,
        })
        .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_context_reads_the_store_and_publishes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .handler(Handler::typed(
            "checked",
            "order.checked",
            move |e: OrderChecked, _ctx| {
                s.lock().unwrap().push(e.member);
                async { Ok::<(), HandlerError>(()) }
            },
        ))
        .build()
        .await
        .unwrap();
    let dir = tempdir::Dir::new("hook_context");
    let store = Store::builder(&bus)
        .prefix(unique_prefix())
        .sqlite(dir.path.join("app.db"))
        .await
        .unwrap();
    let m = store.create(Member::new("ada", "a@x.org")).await.unwrap();
    store
        .create(Order {
            id: None,
            member: m.id.unwrap(),
        })
        .await
        .unwrap();
    let err = store
        .create(Order {
            id: None,
            member: 77,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no member 77"), "{err}");
    wait_until("the hook's event", || !seen.lock().unwrap().is_empty()).await;
    assert_eq!(*seen.lock().unwrap(), ["ada"]);
    assert_eq!(store.all::<Order>().await.unwrap().len(), 1);
    bus.shutdown().await.unwrap();
}
