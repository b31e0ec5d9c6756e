// Every text of the page, in English and French. Keys name what a text is for.

export const TEXTS = {
  en: {
    title: "Stop the sharing of your intimate images",
    switch: "Français",
    switchLabel: "Lire cette page en français",
    intro1:
      "If intimate photos of you, real or faked (for example by an AI that \"undresses\" people), are being shared or might be, this page helps partner platforms block them.",
    intro2:
      "Your photos never leave this device. This page computes a fingerprint of each photo here, in your browser: a short string of numbers from which the photo cannot be rebuilt. Only those fingerprints are sent.",
    intro3:
      "Partner platforms then compare uploads with the fingerprints and block those that match. You receive a case id and a secret: keep both to check your case or withdraw it later.",
    chooseHeading: "1. Choose your photos",
    chooseLabel: "Photos to fingerprint (they stay on this device)",
    progressLabel: "Fingerprinting progress",
    remove: "Remove",
    removeNamed: "Remove photo {name}",
    hashing: "Fingerprinting…",
    hashed: "Ready: {count} fingerprints",
    unreadable: "This file could not be read as a photo; it will not be sent.",
    lowQuality:
      "This photo has too little detail (quality {quality} of 100, 50 needed) to be matched safely; it will not be sent. A sharper or larger copy may work.",
    featureless: "This photo is too plain to be matched safely; it will not be sent.",
    submitHeading: "2. Send the fingerprints",
    submit: "Send fingerprints",
    nothingToSend: "Choose at least one usable photo first.",
    sending: "Sending…",
    sent: "Your case is open. Partner platforms will block matching uploads.",
    caseId: "Case id",
    secret: "Secret",
    secretWarning:
      "Write these down or save them now. The secret is shown only once and cannot be recovered: without it nobody, not even us, can withdraw or look up your case.",
    copy: "Copy case id and secret",
    copied: "Copied.",
    save: "Save as a text file",
    savedText: "Case id: {case}\nSecret: {secret}\n",
    rateLimited:
      "Too many cases were sent from your network recently. Please try again in {minutes} minutes. If you share a network (a shelter, a school, an office), a support organisation can send your case for you.",
    tooMany: "The service refused the case: {message}",
    failed: "Sending failed: {message}. Nothing was stored; please try again.",
    statusHeading: "3. Check or withdraw a case",
    statusCase: "Case id",
    statusSecret: "Secret",
    statusCheck: "Check status",
    withdraw: "Withdraw case",
    active: "{count} fingerprints are active.",
    withdrawnAlready: "This case has been withdrawn.",
    withdrawn: "Withdrawn: {count} fingerprints removed. This is in effect now.",
    needBoth: "Enter the case id and the secret.",
    notFound: "No case matches this id and secret.",
  },
  fr: {
    title: "Empêcher la diffusion de vos images intimes",
    switch: "English",
    switchLabel: "Read this page in English",
    intro1:
      "Si des photos intimes de vous, réelles ou truquées (par exemple par une IA qui « déshabille »), sont diffusées ou risquent de l'être, cette page aide les plateformes partenaires à les bloquer.",
    intro2:
      "Vos photos ne quittent jamais cet appareil. Cette page calcule ici, dans votre navigateur, une empreinte de chaque photo : une courte suite de chiffres à partir de laquelle la photo ne peut pas être reconstituée. Seules ces empreintes sont envoyées.",
    intro3:
      "Les plateformes partenaires comparent ensuite les contenus publiés aux empreintes et bloquent ceux qui correspondent. Vous recevez un numéro de dossier et un code secret : gardez-les pour suivre ou retirer votre dossier.",
    chooseHeading: "1. Choisissez vos photos",
    chooseLabel: "Photos dont calculer l'empreinte (elles restent sur cet appareil)",
    progressLabel: "Calcul des empreintes",
    remove: "Retirer",
    removeNamed: "Retirer la photo {name}",
    hashing: "Calcul de l'empreinte…",
    hashed: "Prête : {count} empreintes",
    unreadable: "Ce fichier n'a pas pu être lu comme une photo ; il ne sera pas envoyé.",
    lowQuality:
      "Cette photo a trop peu de détails (qualité {quality} sur 100, 50 requis) pour être reconnue sans risque d'erreur ; elle ne sera pas envoyée. Une copie plus nette ou plus grande peut convenir.",
    featureless: "Cette photo est trop uniforme pour être reconnue sans risque d'erreur ; elle ne sera pas envoyée.",
    submitHeading: "2. Envoyez les empreintes",
    submit: "Envoyer les empreintes",
    nothingToSend: "Choisissez d'abord au moins une photo utilisable.",
    sending: "Envoi…",
    sent: "Votre dossier est ouvert. Les plateformes partenaires bloqueront les contenus correspondants.",
    caseId: "Numéro de dossier",
    secret: "Code secret",
    secretWarning:
      "Notez-les ou enregistrez-les maintenant. Le code secret n'est affiché qu'une fois et ne peut pas être retrouvé : sans lui, personne, pas même nous, ne peut retirer ou consulter votre dossier.",
    copy: "Copier le numéro et le code",
    copied: "Copié.",
    save: "Enregistrer dans un fichier texte",
    savedText: "Numéro de dossier : {case}\nCode secret : {secret}\n",
    rateLimited:
      "Trop de dossiers ont été envoyés depuis votre réseau récemment. Réessayez dans {minutes} minutes. Si vous partagez un réseau (foyer, école, bureau), une association d'aide peut envoyer votre dossier pour vous.",
    tooMany: "Le service a refusé le dossier : {message}",
    failed: "L'envoi a échoué : {message}. Rien n'a été enregistré ; réessayez.",
    statusHeading: "3. Consulter ou retirer un dossier",
    statusCase: "Numéro de dossier",
    statusSecret: "Code secret",
    statusCheck: "Consulter",
    withdraw: "Retirer le dossier",
    active: "{count} empreintes sont actives.",
    withdrawnAlready: "Ce dossier a été retiré.",
    withdrawn: "Retiré : {count} empreintes supprimées. C'est effectif dès maintenant.",
    needBoth: "Saisissez le numéro de dossier et le code secret.",
    notFound: "Aucun dossier ne correspond à ce numéro et ce code.",
  },
};

/** The page's language from the browser's preferences: French if French comes first. */
export function preferredLanguage(languages) {
  for (const tag of languages) {
    const base = tag.toLowerCase().split("-")[0];
    if (base in TEXTS) return base;
  }
  return "en";
}

export function text(lang, key, values = {}) {
  return TEXTS[lang][key].replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
}
