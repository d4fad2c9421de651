//! Phone numbers written the way people write them, with separators or in another script's
//! digits, are masked whole on the job page.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ClaimRequest, InboxStore, MemoryInboxStore};

use crate::support::{chat_message, delivery};
use crate::{Served, TOKEN};

/// Phone numbers as a handler's error may quote them: with spaces, dashes and parentheses, and
/// in fullwidth and Arabic-Indic digits.
const NUMBERS: [&str; 4] =
    ["+1 (415) 555-0100", "+44 7911 123456", "９１９８７６５４３２１０", "٩١٩٨٧٦٥٤٣٢١٠"];

/// The text of the cell beside the row heading `heading`.
fn cell_beside<'a>(page: &'a str, heading: &str) -> &'a str {
    let row = &page[page.find(&format!(">{heading}</th>")).unwrap_or_else(|| panic!("no {heading} row"))..];
    let cell = &row[row.find("<td>").unwrap() + "<td>".len()..];
    &cell[..cell.find("</td>").unwrap()]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_page_masks_phone_numbers_written_with_separators_or_other_digits() {
    let store = MemoryInboxStore::new();
    store.insert(delivery(chat_message("c1", "m1"))).await.unwrap();
    let job = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 5)).await.unwrap().remove(0);
    let [american, british, fullwidth, arabic_indic] = NUMBERS;
    let error = format!(
        "CRM refused {american}, {british}, {fullwidth} and {arabic_indic}; retry after 2025-01-20T07:51:48Z"
    );
    store.fail(job.lease(), error, Some(SystemTime::now() + Duration::from_secs(3600))).await.unwrap();
    let served = Served::start(Console::new(store).bearer_token(TOKEN), "/console").await;

    let page = served.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        cell_beside(&page.text, "Last error"),
        "CRM refused *, *, * and *; retry after 2025-01-20T07:51:48Z",
        "each number masked whole, the date kept"
    );
    for number in NUMBERS {
        assert!(!page.text.contains(number), "{number} on the page, in the attempt history perhaps");
    }

    let shown = served.get(&format!("/jobs/{}?ids=show", job.id)).await;
    for number in NUMBERS {
        assert!(shown.text.contains(number), "{number} shown when asked");
    }
}
