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
async fn empty_or_missing_folders_are_refused_before_anything_is_written() {
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
    assert!(
        store.list("knowledge/").await.expect("list").is_empty(),
        "nothing was uploaded"
    );
}

/// The rules a responder applies, applied before uploading: a file that is not UTF-8 is
/// left out and named, the others go up; Windows line endings keep their headings; a link
/// to a folder (here, one outside the material) is not followed.
#[tokio::test]
async fn bad_files_are_left_out_and_named_and_links_to_folders_not_followed() {
    let (_moto, store) = bucket().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.md", b"## Hours\r\n\r\nWe open at nine.\r\n");
    write(dir.path(), "b.txt", &[0xff, 0xfe, 0x00, 0x41]);
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.md", b"not for the bucket");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).expect("symlink");

    let synced = sync_folder(&store, dir.path()).await.expect("synced");
    assert_eq!(synced.uploaded, ["a.md"]);
    assert_eq!(
        synced.skipped,
        [("b.txt".to_owned(), responder::knowledge::Skip::NotText)]
    );
    assert_eq!(synced.links_not_followed, ["linked"]);
    let listed: Vec<String> = store
        .list("knowledge/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, ["knowledge/a.md"]);
    let built = build(&store).await.expect("built");
    assert_eq!((built.files, built.passages), (1, 1));
    assert!(built.skipped.is_empty());
}
