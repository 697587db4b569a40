//! `remedios knowledge build`'s folder sync and index against moto's S3.

use remedios_local::knowledge::{SyncError, build, sync_folder};
use remedios_shared::store::Store;
use remedios_testkit::moto::{self, Moto};
use responder::knowledge::{Index, Loaded, index_key};

async fn bucket() -> (Moto, Store) {
    let moto = Moto::start().await.expect("moto starts");
    let s3 = moto::s3_client(&moto.sdk_config().await);
    moto::create_bucket(&s3, "remedios-knowledge-test")
        .await
        .expect("bucket");
    (moto, Store::new(s3, "remedios-knowledge-test"))
}

fn write(dir: &std::path::Path, name: &str, text: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn a_folder_becomes_the_material_and_its_index() {
    let (_moto, store) = bucket().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "faq.md",
        b"## Hours\n\nWe open at nine.\n\n## Prices\n\nA visit costs 40 euros.\n",
    );
    write(
        dir.path(),
        "es/horario.txt",
        "Abrimos a las nueve de la mañana, de lunes a viernes.".as_bytes(),
    );
    write(dir.path(), "logo.png", &[0x89, b'P', b'N', b'G']);
    write(dir.path(), ".notes.md", b"private drafts");

    let synced = sync_folder(&store, dir.path()).await.expect("synced");
    assert_eq!(synced.uploaded, ["es/horario.txt", "faq.md"]);
    assert!(synced.removed.is_empty());
    let built = build(&store).await.expect("built");
    assert_eq!(
        (built.files, built.passages, built.loaded),
        (2, 3, Loaded::Built)
    );
    let (index, _) = store
        .get_json::<Index>(&index_key())
        .await
        .expect("S3")
        .expect("the index is stored");
    assert_eq!(index.passages.len(), 3);
    assert_eq!(build(&store).await.expect("again").loaded, Loaded::Stored);

    // A file gone from the folder is gone from the material, and the index follows.
    std::fs::remove_file(dir.path().join("es/horario.txt")).expect("rm");
    let synced = sync_folder(&store, dir.path()).await.expect("synced again");
    assert_eq!(synced.removed, ["es/horario.txt"]);
    let built = build(&store).await.expect("rebuilt");
    assert_eq!(
        (built.files, built.passages, built.loaded),
        (1, 2, Loaded::Built)
    );
}

#[tokio::test]
async fn bad_folders_are_refused_before_anything_is_written() {
    let (_moto, store) = bucket().await;
    let empty = tempfile::tempdir().expect("tempdir");
    let err = sync_folder(&store, empty.path()).await.unwrap_err();
    assert!(matches!(err, SyncError::Empty(_)), "{err}");
    let missing = sync_folder(&store, &empty.path().join("nope"))
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot read the knowledge folder"),
        "{missing}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.md", b"fine");
    write(dir.path(), "b.txt", &[0xff, 0xfe, 0x00, 0x41]);
    let err = sync_folder(&store, dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("is not UTF-8 text"), "{err}");
    assert!(
        store.list("knowledge/").await.expect("list").is_empty(),
        "nothing was uploaded"
    );
}
